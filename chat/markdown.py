"""Render untrusted model output as Markdown, then sanitise the HTML with nh3 (ammonia)."""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)

_TAGS = {
    "p",
    "br",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "strong",
    "em",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "a",
    "img",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
}


def _keep_class(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "class":
        return value if tag == "code" and value.startswith("language-") and value[9:].isalnum() else None
    if attribute == "style":
        return value if value in ("text-align:left", "text-align:center", "text-align:right") else None
    return value


@lru_cache(maxsize=2048)
def render_markdown(text: str) -> str:
    """Return safe HTML for model output: no scripts, handlers, javascript:/data: URLs, frames or styles."""
    html = _md.render(text)
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        attribute_filter=_keep_class,
        strip_comments=True,
    )
