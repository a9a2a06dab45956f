// The one Markdown renderer of the chat page: a reply streaming in, a stopped one and a saved one
// all go through renderMarkdown(), so what the page shows live is what it shows after a reload.
// Model output is untrusted: markdown-it runs with raw HTML off, then DOMPurify keeps only the tags
// below (MathML from KaTeX, highlight.js spans) and links to http(s)/mailto or relative URLs.
import markdownit from "./vendor/markdown-it/markdown-it.js";
import cjkFriendly from "./vendor/markdown-it-cjk-friendly/index.js";
import DOMPurify from "./vendor/dompurify/purify.js";
import hljs from "./vendor/highlight.js/highlight.min.js";

const SAFE_URL = /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i;
const HTML_TAGS = ["p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
  "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a", "img", "span",
  "section", "eq", "eqn"];
const MATH_TAGS = ["math", "semantics", "annotation", "mrow", "mi", "mo", "mn", "ms", "mtext", "mspace", "msup",
  "msub", "msubsup", "mfrac", "msqrt", "mroot", "munder", "mover", "munderover", "mtable", "mtr", "mtd", "mstyle",
  "mpadded", "mphantom", "menclose", "mmultiscripts", "mprescripts", "none"];
const MATH_ATTRS = ["mathvariant", "display", "encoding", "stretchy", "fence", "separator", "lspace", "rspace",
  "columnalign", "rowspacing", "columnspacing", "width", "height", "depth", "accent", "accentunder", "minsize",
  "maxsize", "movablelimits", "scriptlevel", "displaystyle", "linethickness", "notation", "voffset", "symmetric",
  "largeop", "rowalign", "columnlines", "rowlines", "frame", "mathcolor", "xmlns"];
const PURIFY = {
  ALLOWED_TAGS: [...HTML_TAGS, ...MATH_TAGS],
  ALLOWED_ATTR: ["href", "title", "src", "alt", "class", "start", "rel", ...MATH_ATTRS],
  ALLOWED_URI_REGEXP: SAFE_URL,
  ALLOW_DATA_ATTR: false,
};
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  for (const name of ["href", "src"]) {
    const value = node.getAttribute(name);
    if (value !== null && (/^\s*data:/i.test(value) || !SAFE_URL.test(value))) node.removeAttribute(name);
  }
  if (node.tagName === "A") node.setAttribute("rel", "noopener noreferrer nofollow");
  const keep = node.getAttribute("class");
  if (keep !== null && !/^(?:(?:hljs[\w-]*|language-[\w+#-]+|align-(?:left|center|right)|eqno)\s*)+$/.test(keep)) {
    node.removeAttribute("class");
  }
});

const highlighted = new Map();
function highlight(code, lang) {
  const language = (lang || "").toLowerCase();
  if (!hljs.getLanguage(language)) return "";
  const key = language + "\u0000" + code;
  if (!highlighted.has(key)) {
    if (highlighted.size > 500) highlighted.clear();
    highlighted.set(key, hljs.highlight(code, { language, ignoreIllegals: true }).value);
  }
  return highlighted.get(key);
}

const md = markdownit("commonmark", { html: false, linkify: false, typographer: false, highlight })
  .enable(["table", "strikethrough"])
  .use(cjkFriendly)
  .use(window.texmath, {
    engine: window.katex,
    delimiters: ["dollars", "brackets"],
    // MathML only: KaTeX's HTML output needs inline styles, which the page's CSP forbids.
    katexOptions: { output: "mathml", throwOnError: false },
  });
md.validateLink = (url) => SAFE_URL.test(url.trim()) && !/^\s*data:/i.test(url);
// Table alignment arrives as style="text-align:…", which the CSP would drop: make it a class.
md.core.ruler.push("align_class", (state) => {
  for (const token of state.tokens) {
    const style = token.attrGet && token.attrGet("style");
    if (style) {
      token.attrs = token.attrs.filter(([name]) => name !== "style");
      const align = /text-align:(left|center|right)/.exec(style);
      if (align) token.attrJoin("class", "align-" + align[1]);
    }
  }
});

export function renderMarkdown(source) {
  return DOMPurify.sanitize(md.render(source || ""), PURIFY);
}

// Show source as rendered Markdown in element, replacing only the blocks that changed, so a
// streaming reply does not re-create (and lose the selection in) paragraphs already shown.
export function paint(element, source) {
  if (element.mdSource === source) return false;
  element.mdSource = source;
  const next = document.createElement("div");
  next.innerHTML = renderMarkdown(source);
  // A wide table scrolls in its own box; keyboard users must be able to reach it to scroll it.
  next.querySelectorAll("table").forEach((table) => { table.tabIndex = 0; });
  const blocks = [...next.children].map((node) => node.outerHTML);
  const shown = element.mdBlocks || [];
  let same = 0;
  while (same < shown.length && same < blocks.length && shown[same] === blocks[same]) same += 1;
  if (!element.mdBlocks) element.replaceChildren();
  while (element.children.length > same) element.lastElementChild.remove();
  element.append(...[...next.children].slice(same));
  element.mdBlocks = blocks;
  return true;
}
