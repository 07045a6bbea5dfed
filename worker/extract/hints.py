"""What the raw page says beside its metadata: declared language, the h1, breadcrumb labels.

Read with bounded regular expressions over the page string (trafilatura does the
one parse of the page; a breadcrumb window is the only fragment parsed here).
"""

from __future__ import annotations

import html as htmllib
import json
import re
from dataclasses import dataclass, field

import lxml.html

from worker.extract.guard import INPUT_ERRORS
from worker.text import WORD, language_code

__all__ = ["PageHints", "page_hints"]

_HEAD_SCAN_CHARS = 256 * 1024
# Spelled-out cases instead of re.IGNORECASE: with a literal start the regex engine
# scans for it fast, and these run over whole pages.
_HTML_TAG = re.compile(r"<(?:html|HTML|Html)\b[^>]{0,2000}>")
_META_TAG = re.compile(r"<(?:meta|META|Meta)\b[^>]{0,2000}>")
_ATTR = re.compile(r"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_H1 = re.compile(r"<[hH]1\b[^>]{0,1000}>(.{0,2000}?)</[hH]1\s*>", re.DOTALL)
_TAGS = re.compile(r"<[^>]*>")
# the opening tag around a "breadcrumb" hit: a container named so by class/id/aria/itemtype
_BREADCRUMB_OPEN = re.compile(
    r"""<(?:nav|ol|ul|div|p|span|section|header|small|li)\b[^<>]{0,500}?"""
    r"""\b(?:class|id|aria-label|itemtype)\s*=\s*["'][^"'<>]{0,200}?breadcrumb""",
    re.IGNORECASE,
)
_BREADCRUMB_WINDOW = 4000
_BREADCRUMB_MAX_HITS = 50
_JSONLD_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.){1,80})"')
_LANG_META_NAMES = ("og:locale", "content-language", "language", "dc.language", "dcterms.language")


@dataclass
class PageHints:
    language: str | None = None
    h1: str | None = None
    crumbs: list[str] = field(default_factory=list)


def _attrs(tag: str) -> dict[str, str]:
    return {
        m.group(1).lower(): htmllib.unescape(next(g for g in m.groups()[1:] if g is not None))
        for m in _ATTR.finditer(tag)
    }



def page_hints(page: str) -> PageHints:
    hints = PageHints()
    head_end = page.find("</head", 0, _HEAD_SCAN_CHARS)
    head_end = head_end if head_end >= 0 else _HEAD_SCAN_CHARS  # a bound, not a slice: no copy

    # declared language: <html lang>, then og:locale, then content-language metas
    match = _HTML_TAG.search(page, 0, head_end)
    if match:
        attrs = _attrs(match.group(0))
        hints.language = language_code(attrs.get("lang") or attrs.get("xml:lang"))
    if hints.language is None:
        declared: dict[str, str] = {}
        for tag in _META_TAG.findall(page, 0, head_end):
            if "ocale" not in tag and "anguage" not in tag:  # skip parsing the other metas
                continue
            attrs = _attrs(tag)
            key = (attrs.get("property") or attrs.get("name") or attrs.get("http-equiv") or "").lower()
            if key in _LANG_META_NAMES and key not in declared:
                declared[key] = attrs.get("content", "")
        for key in _LANG_META_NAMES:
            hints.language = language_code(declared.get(key))
            if hints.language:
                break

    match = _H1.search(page)
    if match:
        hints.h1 = " ".join(htmllib.unescape(_TAGS.sub(" ", match.group(1))).split()) or None

    seen: set[int] = set()
    first_hit = page.find("readcrumb")  # [bB]readcrumb; str.find is the fast scan
    if first_hit < 0:
        return hints
    hit = first_hit - 1
    for _ in range(_BREADCRUMB_MAX_HITS):  # "breadcrumb" may be all over a stylesheet
        hit = page.find("readcrumb", hit + 1)
        if hit < 0:
            break
        start = page.rfind("<", max(0, hit - 700), hit)
        if start < 0 or start in seen or not _BREADCRUMB_OPEN.match(page, start, hit + 9):
            continue
        seen.add(start)
        window = page[start : start + _BREADCRUMB_WINDOW]
        try:
            # the window starts at the breadcrumb element, so the parsed root is that
            # element; text after its end tag is outside it (lxml closes what the cut opened)
            element = lxml.html.fragment_fromstring(window, create_parent="div")[0]
        except (*INPUT_ERRORS, IndexError):
            continue
        for piece in element.itertext():
            piece = " ".join(piece.split())
            if piece and WORD.search(piece):
                hints.crumbs.append(piece)
        if len(hints.crumbs) >= 2:
            break
    # '"BreadcrumbList"' holds "readcrumb": none before the first
    hints.crumbs.extend(_jsonld_crumbs(page, max(0, first_hit - 2)))
    return hints


def _jsonld_crumbs(page: str, start: int = 0) -> list[str]:
    """Names in a JSON-LD BreadcrumbList's itemListElement array (read, not parsed); none before ``start``."""
    at = page.find('"BreadcrumbList"', start)
    if at < 0:
        return []
    # the array may come before or after the "@type"; take the nearest one
    after = page.find('"itemListElement"', at, at + 3000)
    before = page.rfind('"itemListElement"', max(0, at - 3000), at)
    starts = [i for i in (after, before) if i >= 0]
    if not starts:
        return []
    start = min(starts, key=lambda i: abs(i - at))
    end = page.find("]", start, start + 5000)
    names = []
    for name in _JSONLD_NAME.findall(page, start, end if end > 0 else start + 5000):
        try:
            names.append(json.loads(f'"{name}"'))
        except ValueError:
            continue
    return names
