"""A feed's summary as a witness: the page block it was cut from, when the extraction left that block out.

WordPress, and most feeds like it, build an item's ``<description>`` from the
article's first words. When the page body chosen lacks the summary's opening
words, the extraction dropped the lede (a standfirst styled apart, text set
directly in a container, a first paragraph inside a teaser box); the summary
says where it is. The summary itself never becomes the text: only the page's
own block does, and only a block of the page that holds the summary's opening.

Pure: a parsed page (lxml tree, before an extraction prunes it) and paragraphs in,
a paragraph out.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from worker.extract.candidates import Candidate, tokens_of

__all__ = ["missing_lede", "summary_lead"]

LEAD_MIN_SHINGLES = 3  # fewer missing opening shingles than this: nothing worth looking for
RESUMED = 3  # shingles in a row the body holds: its text has resumed
FOUND = 0.8  # a page block must hold this share of the missing opening
MAX_LEDE_CHARS = 3000  # longer than this is a container, not a lede
MAX_ELEMENTS = 20_000  # a lede sits near the top of a real page; a hostile one gets no longer look
# Elements whose text is never article text.
_SKIP = frozenset(("script", "style", "noscript", "template", "head", "title", "nav", "footer", "aside", "form",
                   "button", "select", "textarea", "svg", "iframe", "figcaption", "label"))
# Elements that end the text a container holds directly before its first block.
_BLOCKS = frozenset(("address", "article", "aside", "blockquote", "body", "center", "dd", "details", "div", "dl",
                     "dt", "fieldset", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
                     "hr", "html", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "th",
                     "thead", "tr", "ul"))


def summary_lead(summary: Candidate, body: Candidate) -> list[tuple[str, ...]]:
    """The summary's opening shingles the body lacks (empty when the body has the summary's start).

    Read from the summary's start until the body's text resumes (``RESUMED``
    shingles in a row that the body holds); a shingle the body holds by chance
    inside the missing opening (a common phrase) does not end it.
    """
    shingles = summary.ordered_shingles()
    have = body.shingles()
    if all(shingle in have for shingle in shingles[:RESUMED]):
        return []
    lead: list[tuple[str, ...]] = []
    present = 0
    for shingle in shingles:
        if shingle in have:
            present += 1
            if present >= RESUMED:
                del lead[-3:]  # these straddle the end of the missing block and the start of the body's text
                break
        else:
            present = 0
            lead.append(shingle)
    return lead if len(lead) >= LEAD_MIN_SHINGLES else []


def missing_lede(tree: Any, lead: list[tuple[str, ...]]) -> str | None:
    """The text of the smallest page block that holds most of the missing opening ``lead``; None when none does.

    A block's text is what an element holds before its first block-level child
    (all of a ``<p>``; the leading text of a ``<div>`` that sets its first
    paragraph directly in itself), whitespace collapsed.
    """
    if not lead:
        return None
    wanted = set(lead)
    first = lead[0][0]
    best: str | None = None
    stack = [tree]
    visited = 0
    while stack and visited < MAX_ELEMENTS:
        visited += 1
        element = stack.pop()
        tag = element.tag if isinstance(element.tag, str) else ""
        if not tag or tag in _SKIP:
            continue
        stack.extend(reversed(element))
        text = _leading_text(element)
        if text is None or first not in text.lower():
            continue
        tokens = tokens_of(text)
        found = len(wanted & {tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)}) / len(wanted)
        if found >= FOUND and (best is None or len(text) < len(best)):
            best = text
    return best


def _leading_text(element: Any) -> str | None:
    """What ``element`` holds before its first block-level child; None past ``MAX_LEDE_CHARS`` (a container)."""
    parts = [element.text or ""]
    size = len(parts[0])
    for child in element:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag in _BLOCKS:
            break
        pieces = child.itertext() if tag and tag not in _SKIP else iter(())
        for piece in chain(pieces, (child.tail or "",)):
            parts.append(piece)
            size += len(piece)
            if size > MAX_LEDE_CHARS:
                return None
    return " ".join("".join(parts).split())
