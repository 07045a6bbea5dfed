"""A feed's own HTML (content:encoded, summary) -> text paragraphs in the extraction's shape. Pure."""

from __future__ import annotations

import html as htmllib
import re

import lxml.html

from worker.extract.cleanup import clean_paragraphs
from worker.extract.guard import INPUT_ERRORS

__all__ = ["fragment_paragraphs", "text_from_html_fragment"]

_SPACE = re.compile(r"\s+")

# Elements whose text is no part of the content.
_FRAGMENT_DROP = ("script", "style", "noscript", "template", "iframe", "object", "embed", "form",
                  "button", "select", "textarea", "svg", "math", "figcaption", "head", "title")
# Elements that end a paragraph.
_FRAGMENT_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "body", "center", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "html", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot",
    "thead", "tr", "ul",
})
_FRAGMENT_CELLS = frozenset(("td", "th"))
# A link that only points on to the article: "Continue reading", "Read more »", "Read the full story".
_READ_ON = re.compile(
    r"\s*(?:continue\s+reading|read\s+more|read\s+the\s+(?:full\s+|whole\s+)?(?:rest|story|article|post))\b.{0,150}$",
    re.IGNORECASE | re.DOTALL,
)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _fragment_blocks(element: lxml.html.HtmlElement) -> list[str]:
    """Flatten to paragraphs in trafilatura's text shape (blocks and <br> end one)."""
    pieces: list[str] = []

    def text(value: str | None) -> None:
        if value:  # a newline in HTML text is just a space
            pieces.append(_SPACE.sub(" ", value))

    # iterative walk: feed HTML can nest deeper than Python's recursion limit
    stack: list[tuple[lxml.html.HtmlElement, bool]] = [(element, False)]
    while stack:
        node, closing = stack.pop()
        tag = node.tag if isinstance(node.tag, str) else ""
        if closing:
            if tag in _FRAGMENT_BLOCKS:
                pieces.append("\n")
            elif tag in _FRAGMENT_CELLS:
                pieces.append(" | ")
            text(node.tail)
            continue
        if not tag:  # comment or processing instruction: only its tail is text
            text(node.tail)
            continue
        if tag == "br":
            pieces.append("\n")
        elif tag in _FRAGMENT_BLOCKS:
            pieces.append("\n- " if tag == "li" else "\n")
        text(node.text)
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node))
    return "".join(pieces).split("\n")


def text_from_html_fragment(html: str) -> str:
    """A feed's own content:encoded/summary HTML -> plain text paragraphs.

    The fallback article when the page cannot be fetched or extracted. Same
    paragraph format as :func:`extract_article` (one blank line between
    paragraphs; block elements and ``<br>`` end a paragraph; list items as
    ``- item``) and the same clean-up of promos, share text and related lists
    (no title/label rules: those need the page's metadata). Text without markup
    is split at its blank lines (or, having none, at its line breaks). Never
    raises; "" when there is no text.
    """
    if not html or not html.strip():
        return ""
    lines, _ = fragment_paragraphs(html)
    return "\n\n".join(clean_paragraphs(lines, title=None, labels=()))


def fragment_paragraphs(html: str) -> tuple[list[str], float]:
    """Feed HTML -> (raw text blocks, share of the text inside links). ([], 0.0) when unreadable."""
    if "<" not in html:
        blocks = re.split(r"\n\s*\n", html) if re.search(r"\n\s*\n", html) else html.split("\n")
        return [htmllib.unescape(b) for b in blocks], 0.0
    try:
        # lxml refuses strings with NUL/control characters outright
        root = lxml.html.fragment_fromstring(_CONTROL_CHARS.sub("", html), create_parent="div")
        for element in list(root.iter(*_FRAGMENT_DROP)):
            if element.getparent() is not None:
                element.drop_tree()  # keeps its tail: that belongs to the parent's text
        for link in list(root.iter("a")):  # a theme's "Continue reading <title>" closing an excerpt
            closing = link.getnext() is None and not (link.tail or "").strip(" \t\n\r.»›→…")
            if closing and link.getparent() is not None and _READ_ON.match(link.text_content()):
                link.drop_tree()
        total = len(_SPACE.sub("", root.text_content()))
        linked = sum(len(_SPACE.sub("", a.text_content())) for a in root.iter("a"))
        return _fragment_blocks(root), (linked / total if total else 0.0)
    except INPUT_ERRORS:
        return [], 0.0
