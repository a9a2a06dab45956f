// Chat page: send with fetch, read the server-sent events, render Markdown as it streams. A reply runs on the
// server on its own: leaving the page does not stop it, Stop asks the server to, and a lost or reopened stream
// resumes from its last event id.
import { paint } from "./render.js";

const _ = (text) => (window.gettext ? window.gettext(text) : text);
const ngettext = (one, many, n) => (window.ngettext ? window.ngettext(one, many, n) : n === 1 ? one : many);
const format = (text, values) => text.replace(/%\((\w+)\)s/g, (_match, key) => values[key]);

const form = document.getElementById("composer");
const box = document.getElementById("message");
const list = document.getElementById("messages");
const errorBox = document.getElementById("chat-error");
const announcer = document.getElementById("announcer");
const jump = document.querySelector('[data-action="jump"]');
const counter = document.getElementById("composer-count");
const sendButton = form.querySelector('[data-action="send"]');
const stopButton = form.querySelector('[data-action="stop"]');
const modelPicker = document.getElementById("model-picker");
const credentialPicker = form.querySelector('select[name="credential"]');
const csrf = form.querySelector('input[name="csrfmiddlewaretoken"]').value;
const maxChars = Number(box.dataset.maxChars);
const coarse = window.matchMedia("(pointer: coarse)");
// Drafts are per user, so the next person on a shared browser never sees them (also cleared on log-out).
const draftKey = (path = location.pathname) => "byok-draft:" + form.dataset.user + ":" + path;
let conversationUrl = form.dataset.conversationUrl || "";
let controller = null; // the reply this page is following, if any
let stopUrl = "";
let following = true; // keep the newest text in view until the reader scrolls up
let composing = false;

// --- Reading while it streams -------------------------------------------------------------------

function nearBottom() {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 48;
}

function keepInView() {
  if (following) list.scrollTop = list.scrollHeight;
  jump.hidden = following || nearBottom();
}

list.addEventListener("scroll", () => {
  following = nearBottom();
  if (following) jump.hidden = true;
}, { passive: true });

jump.addEventListener("click", () => {
  following = true;
  list.scrollTop = list.scrollHeight;
  jump.hidden = true;
  box.focus();
});

// --- Rendering ----------------------------------------------------------------------------------

function addCopyButtons(root) {
  root.querySelectorAll("pre").forEach((pre) => {
    if (pre.querySelector(".copy")) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = _("Copy");
    button.addEventListener("click", () => copyText(pre.querySelector("code")?.innerText ?? pre.innerText, button));
    pre.appendChild(button);
  });
}

function render(element, source) {
  if (paint(element, source)) addCopyButtons(element);
}

async function copyText(text, button) {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = _("Copied");
  } catch {
    button.textContent = _("Copy failed");
  }
  setTimeout(() => { button.textContent = label; }, 1500);
}

// Saved messages arrive as their Markdown source; the same paint() that renders a live reply shows them.
function paintSaved(root) {
  root.querySelectorAll("[data-markdown]").forEach((element) => {
    if (element.mdSource === undefined) render(element, element.textContent);
  });
}

// --- Messages -----------------------------------------------------------------------------------

function showError(text, link) {
  errorBox.textContent = text;
  if (link) {
    const a = document.createElement("a");
    a.href = link;
    a.textContent = _("Open the API keys page");
    errorBox.append(" ", a);
  }
  errorBox.hidden = !text;
}

function bubble(role, text) {
  document.getElementById("welcome")?.remove();
  const article = document.createElement("article");
  article.className = "msg msg-" + role;
  article.dataset.role = role;
  const body = document.createElement("div");
  if (role === "user") {
    body.className = "bubble user-text";
    body.textContent = text;
  } else {
    body.className = "bubble markdown";
    body.dataset.markdown = "";
  }
  article.appendChild(body);
  list.appendChild(article);
  following = true;
  keepInView();
  return article;
}

function note(article, className, text, before) {
  const p = document.createElement("p");
  p.className = "msg-note " + className;
  p.textContent = text;
  if (before) article.querySelector(".bubble").before(p);
  else article.querySelector(".bubble").after(p);
  return p;
}

function setState(article, state, text) {
  article.dataset.state = state;
  article.querySelector(".msg-note:not(.note-trimmed)")?.remove();
  const words = text || (state === "stopped" ? _("Stopped.") : "");
  if (words) note(article, "note-" + state, words);
}

function addActions(article) {
  if (article.querySelector(".msg-actions") || !conversationUrl) return;
  const template = document.getElementById("actions-" + article.dataset.role);
  article.appendChild(template.content.cloneNode(true));
  const model = article.querySelector(".msg-model");
  if (model) model.textContent = article.dataset.model || "";
  if (model && article.usage) model.after(" ", usageLabel(article.usage));
}

// This version's tokens and cost, as templates/chat/_actions_assistant.html shows them after a reload.
function usageLabel(usage) {
  const label = document.createElement("span");
  label.className = "msg-usage";
  label.dataset.usage = "";
  const total = usage.total_tokens.toLocaleString("en-US");
  label.textContent = format(ngettext("%(total)s token", "%(total)s tokens", usage.total_tokens), { total })
    + (usage.cost_usd === null ? "" : ` · $${usage.cost_usd}`);
  label.title = format(_("%(prompt)s tokens in, %(completion)s out"), {
    prompt: usage.prompt_tokens.toLocaleString("en-US"), completion: usage.completion_tokens.toLocaleString("en-US"),
  }) + (usage.estimated ? ` (${_("counted locally")})` : "");
  return label;
}

function busy(on) {
  sendButton.hidden = on;
  stopButton.hidden = !on;
  form.classList.toggle("is-busy", on);
  list.querySelectorAll(".msg-actions button, .versions button, .msg-note button").forEach((b) => { b.disabled = on; });
  updateCounter();
}

function reasoningBox(article) {
  let details = article.querySelector("[data-reasoning]");
  if (!details) {
    details = document.getElementById("reasoning-template").content.firstElementChild.cloneNode(true);
    details.open = true;
    article.querySelector(".bubble").before(details);
  }
  return details;
}

function started(article, user, data) {
  article.dataset.messageId = data.assistant_message;
  article.dataset.eventsUrl = data.events_url;
  stopUrl = data.stop_url;
  if (user) user.dataset.messageId = data.user_message;
  trimmedNote(article, data.trimmed);
  localStorage.removeItem(draftKey());
  conversationUrl = data.url;
  if (location.pathname !== data.url) adoptNewConversation(data);
}

function adoptNewConversation(data) {
  localStorage.removeItem(draftKey());
  history.replaceState(null, "", data.url);
  form.action = data.url + "send/";
  form.dataset.conversationUrl = data.url;
  document.title = [data.title, document.title.split(" · ").pop()].join(" · ");
  const link = document.createElement("a");
  link.href = data.url;
  link.className = "conversation-link current";
  link.setAttribute("aria-current", "page");
  link.textContent = data.title;
  const sidebar = document.querySelector(".conversation-list");
  sidebar?.querySelector(".empty-note")?.remove();
  let today = sidebar?.querySelector(".sidebar-group");
  const todayLabel = sidebar?.dataset.today;
  if (sidebar && today?.textContent !== todayLabel) {
    today = document.createElement("h2");
    today.className = "sidebar-group";
    today.textContent = todayLabel;
    sidebar.prepend(today);
  }
  today?.after(link);
  form.querySelector(".prompt-settings")?.remove(); // a system prompt typed here applied to the new chat only
  const template = document.getElementById("conversation-head");
  if (template) {
    const head = template.content.cloneNode(true);
    head.querySelector('input[name="title"]').value = data.title;
    template.parentElement.replaceChildren(head);
  }
}

function announce(article) {
  // One polite announcement per reply (a live region around the stream would read every chunk).
  const text = article.querySelector(".bubble").innerText.trim();
  const state = article.querySelector(".msg-note:not(.note-trimmed)")?.textContent || "";
  announcer.textContent = "";
  announcer.textContent = [_("Reply:"), text.slice(0, 1200), state].filter(Boolean).join(" ");
}

function trimmedNote(article, count) {
  if (!count || article.querySelector(".note-trimmed")) return;
  note(article, "note-trimmed", format(ngettext(
    "%(count)s earlier message left out to fit the model’s context window.",
    "%(count)s earlier messages left out to fit the model’s context window.", count), { count }), true);
}

// How the provider ended the reply, when the reader should know: cut by the output limit (with Continue),
// or stopped by its content filter. The same notes as templates/chat/_message.html.
function endingNote(article, finish) {
  if (finish === "length") {
    const p = note(article, "note-length", _("The reply reached the model’s output limit."));
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link small";
    button.dataset.action = "continue";
    button.textContent = _("Continue");
    p.append(" ", button);
  } else if (finish === "content_filter") {
    note(article, "note-content-filter", _("The provider’s content filter stopped this reply."));
  }
}

function finished(article, data) {
  if (data.finish) article.dataset.finish = data.finish;
  else delete article.dataset.finish;
  article.usage = data.usage;
  setState(article, data.state, data.error);
  endingNote(article, data.finish);
  trimmedNote(article, data.trimmed);
  if (data.redirect) {
    const link = document.createElement("a");
    link.href = data.redirect;
    link.textContent = _("Open the API keys page");
    article.querySelector(".msg-note:not(.note-trimmed)")?.append(" ", link);
  }
  const details = article.querySelector("[data-reasoning]");
  if (details && !details.dataset.touched) details.open = false;
}

// Read a text/event-stream body: `data:` text (default event), `event: reasoning`, `start`, `done`.
async function readEvents(response, article, onStart, resumed = false) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const body = article.querySelector(".bubble");
  if (!resumed || !article.dataset.lastEventId) { // the server sends the reply from its beginning
    article.text = "";
    article.thinking = "";
  }
  let frame = 0;
  const repaint = () => {
    frame = 0;
    render(body, article.text);
    if (article.thinking) render(reasoningBox(article).querySelector(".reasoning-body"), article.thinking);
    keepInView();
  };
  const schedule = () => { if (!frame) frame = requestAnimationFrame(repaint); };
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const raw of events) {
      let name = "message";
      let data = "";
      for (const line of raw.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(line.startsWith("data: ") ? 6 : 5);
        else if (line.startsWith("id:")) article.dataset.lastEventId = line.slice(3).trim();
      }
      if (!data) continue; // a comment or keep-alive
      const payload = JSON.parse(data);
      if (name === "message") { article.text += payload; schedule(); }
      else if (name === "reasoning") { article.thinking += payload; schedule(); }
      else if (name === "start") {
        if (resumed) { stopUrl = payload.stop_url; article.dataset.eventsUrl = payload.events_url; }
        else onStart(payload);
      }
      else if (name === "done") {
        if (frame) cancelAnimationFrame(frame);
        repaint();
        finished(article, payload);
      }
    }
  }
  if (frame) { cancelAnimationFrame(frame); repaint(); }
}

// POST fields to url and stream the reply into a new assistant bubble (or into `existing`, an answer being
// continued); `undo` runs if the server refuses.
async function stream(url, fields, undo, user = null, existing = null) {
  showError("");
  fields.set("csrfmiddlewaretoken", csrf);
  if (modelPicker) fields.set("model", modelPicker.value);
  if (credentialPicker) fields.set("credential", credentialPicker.value);
  const article = existing || bubble("assistant", "");
  article.dataset.state = "streaming";
  if (!existing) article.dataset.model = modelPicker?.value || "";
  controller = article;
  busy(true);
  try {
    const response = await fetch(url, {
      method: "POST", body: fields, headers: { Accept: "text/event-stream" }, credentials: "same-origin",
    });
    if (!response.ok) {
      if (!existing) article.remove();
      undo();
      const data = await response.json().catch(() => ({}));
      if (data.redirect && !list.querySelector(".msg")) { location.assign(data.redirect); return; }
      showError(data.error || format(_("The server could not take your message (%(status)s). Nothing was lost."),
        { status: response.status }), data.redirect);
      return;
    }
    try {
      await readEvents(response, article, (data) => {
        started(article, user, data);
        if (user) { box.value = ""; grow(); updateCounter(); }
      });
    } catch {
      // The reply goes on without us; follow it again below.
    }
    if (article.dataset.state === "streaming") await resume(article);
  } catch {
    setState(article, "error", _("The connection to the server was lost. Reload to see what was saved."));
  } finally {
    controller = null;
    stopUrl = "";
    if (user) addActions(user);
    addActions(article);
    busy(false);
    if (article.isConnected) announce(article);
    keepInView();
  }
  return article;
}

// Follow a reply that is still being written (after a reload or a lost connection), from the last event seen.
async function resume(article) {
  for (let attempt = 0; attempt < 20 && article.dataset.state === "streaming"; attempt += 1) {
    if (!article.dataset.eventsUrl) return;
    try {
      const headers = { Accept: "text/event-stream" };
      if (article.dataset.lastEventId) headers["Last-Event-ID"] = article.dataset.lastEventId;
      const response = await fetch(article.dataset.eventsUrl, { headers, credentials: "same-origin" });
      if (!response.ok) break;
      await readEvents(response, article, () => {}, true);
    } catch {
      await new Promise((resolve) => { setTimeout(resolve, Math.min(1000 * 2 ** attempt, 15000)); });
    }
  }
  if (article.dataset.state === "streaming") {
    setState(article, "incomplete", _("The connection ended before the reply was finished. Reload to see it."));
  }
}

async function stopReply() {
  if (!stopUrl) return;
  const fields = new FormData();
  fields.set("csrfmiddlewaretoken", csrf);
  await fetch(stopUrl, { method: "POST", body: fields, credentials: "same-origin" }).catch(() => {});
}

// After an edit or a regenerate the thread has a new version: show the server's view of it.
async function reloadThread() {
  const response = await fetch(location.pathname, { credentials: "same-origin" });
  if (!response.ok) return;
  const page = new DOMParser().parseFromString(await response.text(), "text/html");
  const fresh = page.getElementById("messages");
  if (!fresh) return;
  list.replaceChildren(...fresh.childNodes);
  paintSaved(list);
  keepInView();
}

function send() {
  const text = box.value.trim();
  if (!text || controller || tooLong()) return;
  const user = bubble("user", text);
  stream(form.action, new FormData(form), () => user.remove(), user);
}

function regenerate(button) {
  const old = button.closest("article");
  const later = laterThan(old, true);
  later.forEach((node) => { node.hidden = true; });
  const fields = new FormData();
  fields.set("message_id", old.dataset.messageId);
  stream(conversationUrl + "regenerate/", fields, () => later.forEach((node) => { node.hidden = false; }))
    .then((article) => { if (article?.dataset.state !== "error") reloadThread(); });
}

// Go on with an answer cut by the output limit: the new text is appended to the same answer.
function continueReply(button) {
  const article = button.closest("article");
  const { state, finish } = article.dataset;
  const notes = [...article.querySelectorAll(".msg-note:not(.note-trimmed)")];
  notes.forEach((node) => node.remove());
  delete article.dataset.finish;
  const fields = new FormData();
  fields.set("message_id", article.dataset.messageId);
  stream(conversationUrl + "continue/", fields, () => {
    article.dataset.state = state;
    if (finish) article.dataset.finish = finish;
    article.querySelector(".bubble").after(...notes);
  }, null, article);
}

function laterThan(article, inclusive) {
  const nodes = inclusive ? [article] : [];
  for (let node = article.nextElementSibling; node; node = node.nextElementSibling) nodes.push(node);
  return nodes;
}

function edit(button) {
  const article = button.closest("article");
  const body = article.querySelector(".bubble");
  const original = body.textContent;
  const editor = document.getElementById("edit-template").content.firstElementChild.cloneNode(true);
  const area = editor.querySelector("textarea");
  area.value = original;
  body.hidden = true;
  article.querySelector(".msg-actions").hidden = true;
  article.appendChild(editor);
  area.focus();
  const close = () => {
    editor.remove();
    body.hidden = false;
    article.querySelector(".msg-actions").hidden = false;
  };
  editor.querySelector('[data-action="cancel-edit"]').addEventListener("click", close);
  bindEnter(area, () => editor.requestSubmit());
  editor.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = area.value.trim();
    if (!text || controller) return;
    const later = laterThan(article, false);
    later.forEach((node) => { node.hidden = true; });
    close();
    body.textContent = text;
    const fields = new FormData();
    fields.set("message", text);
    fields.set("message_id", article.dataset.messageId);
    stream(conversationUrl + "edit/", fields, () => {
      body.textContent = original;
      later.forEach((node) => { node.hidden = false; });
    }).then((reply) => { if (reply?.dataset.state !== "error") reloadThread(); });
  });
}

function copyMessage(button) {
  const body = button.closest("article").querySelector(".bubble");
  copyText(body.mdSource ?? body.textContent, button);
}

// --- Phone drawer -------------------------------------------------------------------------------

const layout = document.querySelector(".chat-layout");
const drawerToggle = document.querySelector('[data-action="open-drawer"]');

function drawer(open) {
  layout.classList.toggle("drawer-open", open);
  drawerToggle.setAttribute("aria-expanded", String(open));
  document.querySelector(".drawer-backdrop").hidden = !open;
  if (open) document.querySelector("#sidebar a, #sidebar input")?.focus();
  else drawerToggle.focus();
}

drawerToggle.addEventListener("click", () => drawer(!layout.classList.contains("drawer-open")));
document.querySelector(".drawer-backdrop").addEventListener("click", () => drawer(false));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && layout.classList.contains("drawer-open")) drawer(false);
});

// --- Composer -----------------------------------------------------------------------------------

function length(text) {
  return [...text.trim()].length; // code points, as the server counts
}

function tooLong() {
  return length(box.value) > maxChars;
}

function updateCounter() {
  const count = length(box.value);
  const over = count > maxChars;
  counter.hidden = count < maxChars * 0.8;
  counter.textContent = over
    ? format(_("%(count)s / %(limit)s characters: too long to send. Shorten it or split it up."),
      { count: count.toLocaleString(), limit: maxChars.toLocaleString() })
    : format(_("%(count)s / %(limit)s characters"), { count: count.toLocaleString(), limit: maxChars.toLocaleString() });
  counter.classList.toggle("is-over", over);
  box.setAttribute("aria-invalid", over ? "true" : "false");
  sendButton.disabled = over;
}

// Enter sends, Shift+Enter adds a line; never while an input method is composing (Chromium reports
// isComposing; Safari ends the composition first and then sends an Enter keydown with keyCode 229).
// On touch screens Enter adds a line and the Send button sends.
function bindEnter(area, submit) {
  area.addEventListener("compositionstart", () => { composing = true; });
  area.addEventListener("compositionend", () => { composing = false; });
  area.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.altKey) return;
    if (event.isComposing || composing || event.keyCode === 229) return;
    if (coarse.matches && !(event.ctrlKey || event.metaKey)) return;
    event.preventDefault();
    submit();
  });
}

function grow() {
  box.style.height = "auto";
  box.style.height = Math.min(box.scrollHeight, 224) + "px";
}

async function loadModels() {
  if (!modelPicker) return;
  const params = new URLSearchParams();
  if (credentialPicker) params.set("credential", credentialPicker.value);
  try {
    const response = await fetch(form.dataset.modelsUrl + "?" + params, { credentials: "same-origin" });
    const data = await response.json();
    // Suggestions only: any typed model id is sent as is.
    modelPicker.list.replaceChildren(...data.models.map((name) => new Option(name, name)));
    modelPicker.title = data.error || "";
  } catch {
    modelPicker.title = _("Could not load the model list; type a model id.");
  }
}

form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
stopButton.addEventListener("click", stopReply);
list.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  if (button.dataset.action === "copy-message") { copyMessage(button); return; }
  if (controller) return;
  if (button.dataset.action === "regenerate") regenerate(button);
  if (button.dataset.action === "continue") continueReply(button);
  if (button.dataset.action === "edit") edit(button);
});
list.addEventListener("click", (event) => {
  const summary = event.target.closest("[data-reasoning] > summary");
  if (summary) summary.parentElement.dataset.touched = "1"; // the reader chose; leave it open or shut
});
bindEnter(box, () => { if (!controller) send(); });
box.addEventListener("input", () => {
  localStorage.setItem(draftKey(), box.value);
  grow();
  updateCounter();
});
credentialPicker?.addEventListener("change", loadModels);

if (coarse.matches) box.placeholder = _("Message…"); // on touch, Enter is a new line and Send sends
box.value = localStorage.getItem(draftKey()) || box.value;
sendButton.disabled = false;
grow();
updateCounter();
paintSaved(list);
loadModels();
list.scrollTop = list.scrollHeight;
const streaming = list.querySelector('[data-role="assistant"][data-state="streaming"]');
if (streaming) {
  // Reopened while a reply is still being written: show it from the start and follow it live.
  streaming.querySelector(".msg-note:not(.note-trimmed)")?.remove();
  controller = streaming;
  stopUrl = streaming.dataset.stopUrl;
  busy(true);
  resume(streaming).finally(() => {
    controller = null;
    stopUrl = "";
    addActions(streaming);
    busy(false);
    announce(streaming);
  });
}
