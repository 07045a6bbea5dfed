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

from typing import Any

from worker.extract.candidates import Candidate, tokens_of

__all__ = ["missing_lede", "summary_lead"]

LEAD_MIN_SHINGLES = 3  # fewer missing opening shingles than this: nothing worth looking for
FOUND = 0.8  # a page block must hold this share of the missing opening
MAX_LEDE_CHARS = 3000  # longer than this is a container, not a lede
# Elements whose text is never article text.
_SKIP = frozenset(("script", "style", "noscript", "template", "head", "title", "nav", "footer", "aside", "form",
                   "button", "select", "textarea", "svg", "iframe", "figcaption", "label"))
# Elements that end the text a container holds directly before its first block.
_BLOCKS = frozenset(("address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "fieldset", "figure",
                     "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
                     "ol", "p", "pre", "section", "table", "ul"))


def summary_lead(summary: Candidate, body: Candidate) -> list[tuple[str, ...]]:
    """The summary's opening shingles the body lacks (empty when the body has the summary's start)."""
    lead: list[tuple[str, ...]] = []
    have = body.shingles()
    for shingle in summary.ordered_shingles():
        if shingle in have:
            break
        lead.append(shingle)
    return lead if len(lead) >= LEAD_MIN_SHINGLES else []


def missing_lede(tree: Any, lead: list[tuple[str, ...]]) -> str | None:
    """The text of the smallest page block that holds the missing opening ``lead``; None when none does.

    A block's text is what an element holds before its first block-level child
    (all of a ``<p>``; the leading text of a ``<div>`` that sets its first
    paragraph directly in itself), whitespace collapsed.
    """
    if not lead:
        return None
    wanted = set(lead)
    first = lead[0][0]
    best: tuple[float, int, str] | None = None
    stack = [tree]
    while stack:
        element = stack.pop()
        tag = element.tag if isinstance(element.tag, str) else ""
        if not tag or tag in _SKIP:
            continue
        stack.extend(reversed(element))
        text = _leading_text(element)
        if len(text) > MAX_LEDE_CHARS or first not in text.lower():
            continue
        tokens = tokens_of(text)
        found = len(wanted & {tuple(tokens[i:i + 4]) for i in range(len(tokens) - 3)}) / len(wanted)
        if found >= FOUND:
            key = (-found, len(text), text)
            if best is None or key < best:
                best = key
    return best[2] if best is not None else None


def _leading_text(element: Any) -> str:
    parts = [element.text or ""]
    for child in element:
        tag = child.tag if isinstance(child.tag, str) else ""
        if tag in _BLOCKS:
            break
        if tag and tag not in _SKIP:
            parts.append("".join(child.itertext()))
        parts.append(child.tail or "")
    return " ".join("".join(parts).split())
