"""A page's metadata (title, author, date, site, image, categories, tags) at a fraction of the usual cost.

Why not ``trafilatura.extract_metadata`` (``bare_extraction(with_metadata=True)``):
on the corpus it costs about half as much again as the extraction itself, and
most of that goes on work a feed worker does not need: htmldate's search for a
date (it deep-copies the whole tree first) when the feed already dates every
entry, an XPath hunt for a byline (another deep copy) when the feed names the
author, and licence detection. This module runs trafilatura's own cheap parts
(meta tags, OpenGraph, title, canonical link; JSON-LD through :func:`meta_json`, its
loop made cheaper) on the tree the extraction is about to use, reads the declared publication date
and the rel=category/tag links from the raw page with bounded regular
expressions, and calls the expensive
parts only when the feed leaves a gap (no author, no date).

Pure: a parsed tree and the page string in, :class:`PageMeta` out. Uses
trafilatura's metadata helpers, which are not in its ``__all__``; the version
range in pyproject.toml pins the API they rely on.
"""

from __future__ import annotations

import html as htmllib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from htmldate import find_date
from lxml.html import HtmlElement
from trafilatura.json_metadata import JSON_UNICODE_REPLACE, extract_json, extract_json_parse_error
from trafilatura.metadata import (
    examine_meta,
    extract_author,
    extract_sitename,
    extract_title,
    extract_url,
)
from trafilatura.settings import Document
from trafilatura.utils import HTML_STRIP_TAGS

from worker.timefmt import iso_utc as format_iso
from worker.timefmt import parse_iso

__all__ = ["PageMeta", "declared_date", "declared_updated", "page_metadata", "rel_links", "search_date", "sections"]


@dataclass
class PageMeta:
    title: str | None = None
    author: str | None = None
    published: str | None = None  # ISO 8601 UTC, "YYYY-MM-DDTHH:MM:SSZ"
    updated: str | None = None  # the declared last modification, same format
    url: str | None = None
    sitename: str | None = None
    description: str | None = None
    image: str | None = None
    categories: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def page_metadata(tree: HtmlElement, page: str, *, url: str, need_author: bool, need_date: bool) -> PageMeta:
    """Metadata of a parsed page; call it before the extraction prunes ``tree``.

    ``need_author``/``need_date``: whether the caller has no author/date of its
    own (from the feed); only then are the costly byline and date searches run.
    Raises what lxml/trafilatura raise on hostile input; the caller wraps it.
    """
    document = examine_meta(tree)
    if document.author and " " not in document.author:  # a handle, not a name (trafilatura's rule)
        document.author = None
    document = meta_json(tree, document)
    title = document.title or extract_title(tree)
    author = document.author
    if not author and need_author:
        author = extract_author(tree)
    sitename = (document.sitename or extract_sitename(tree) or "").lstrip("@") or None
    head_end = _head_end(page)
    # a <time> element may date a sidebar item; trusted only when the feed gives no date
    published = declared_date(page, time_elements=need_date, head_end=head_end)
    if published is None and need_date:
        published = search_date(page, url)
    categories = list(document.categories or [])
    tags = list(document.tags or [])
    if not categories or not tags:  # one scan of the page's rel= links gives both
        linked_categories, linked_tags = _rel_links(page)
        categories = categories or linked_categories or sections(page)
        tags = tags or linked_tags
    return PageMeta(
        title=" ".join((title or "").split()) or None,
        author=author or None,
        published=published,
        updated=declared_updated(page, head_end=head_end),
        url=document.url or extract_url(tree, url) or None,
        sitename=sitename,
        description=document.description or None,
        image=document.image or None,
        categories=categories,
        tags=tags,
    )


# JSON-LD as trafilatura's ``extract_meta_json`` reads it, with the same result, in a third of
# its time: its whitespace "minify" expands a regex template per string literal, its
# normalisation filters surrogates one character at a time in Python, and its XPath
# (``.//script[@type=...]``) costs more than iterating the page's scripts.
_JSON_TYPES = ("application/ld+json", "application/settings+json")
# trafilatura's JSON_MINIFY (a string literal kept, whitespace elsewhere dropped), one run of it at a
# time, its string literal unrolled ("[^"\\]*(?:\\.[^"\\]*)*": the same strings, without an alternation
# tried at every character)
_JSON_STRING_OR_SPACE = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")|\s+')
_SURROGATES = re.compile("[\ud800-\udfff]")


def meta_json(tree: HtmlElement, document: Document) -> Document:
    """``document`` completed from the page's JSON-LD: what ``trafilatura.metadata.extract_meta_json`` returns."""
    for element in tree.iterdescendants("script"):  # as ".//script": the root itself is not searched
        if element.get("type") not in _JSON_TYPES or not element.text:
            continue
        text = _normalize_json("".join(filter(None, _JSON_STRING_OR_SPACE.split(element.text))))
        try:
            # strict=False: as trafilatura, which accepts the control characters strict JSON refuses
            document = extract_json(json.loads(text, strict=False), document)
        except json.JSONDecodeError:
            document = extract_json_parse_error(text, document)
    return document


def _normalize_json(text: str) -> str:
    """``trafilatura.json_metadata.normalize_json``, surrogates dropped by one regex."""
    if "\\" in text:
        text = text.replace("\\n", "").replace("\\r", "").replace("\\t", "")
        text = JSON_UNICODE_REPLACE.sub(lambda match: chr(int(match[1], 16)), text)
        text = htmllib.unescape(_SURROGATES.sub("", text))
    return " ".join(HTML_STRIP_TAGS.sub("", text).split())


# <a rel="category tag" ...>Name</a>, <a rel="tag">: how WordPress and most CMSs mark an
# article's own categories and tags. trafilatura's extract_catstags finds more templates
# but runs regex XPaths over every element (a fifth of an extraction's cost on the corpus).
_REL_ATTR = re.compile(r"""\brel\s*=\s*["']?([^"'>]{1,40})""", re.IGNORECASE)
_ANCHOR_END = re.compile(r"</a\s*>", re.IGNORECASE)
_TAG_MARKUP = re.compile(r"<[^>]*>")
_MAX_REL_LINKS = 30
_MAX_ANCHOR_CHARS = 700


def rel_links(page: str, kind: str) -> list[str]:
    """Texts of the page's ``rel="category ..."`` (kind "category") or ``rel="tag"`` (kind "tag") links."""
    categories, tags = _rel_links(page)
    return categories if kind == "category" else tags


def _rel_links(page: str) -> tuple[list[str], list[str]]:
    """Texts of the page's ``rel="category ..."`` links and of its ``rel="tag"`` ones, read in one scan."""
    categories: list[str] = []
    tags: list[str] = []
    limit = min(len(page), _SCAN_CHARS * 2)
    at = 0
    while len(categories) < _MAX_REL_LINKS or len(tags) < _MAX_REL_LINKS:
        # str.find for the rare attribute, then look around it: a regex tried at every
        # "<a" cost more than the rest of the metadata together
        at = page.find("rel=", at, limit)
        if at < 0:
            break
        start = page.rfind("<", max(0, at - _MAX_ANCHOR_CHARS), at)
        close = page.find(">", at, min(at + _MAX_ANCHOR_CHARS, limit))
        at += 4
        if start < 0 or close < 0 or page[start + 1 : start + 3].lower() not in ("a ", "a\n", "a\t"):
            continue
        attr = _REL_ATTR.search(page, start, close + 1)
        if attr is None:
            continue
        rels = attr.group(1).lower().split()
        if "category" in rels:
            found = categories
        elif "tag" in rels:
            found = tags
        else:
            continue
        if len(found) >= _MAX_REL_LINKS:
            continue
        end = _ANCHOR_END.search(page, close, min(close + _MAX_ANCHOR_CHARS, limit))
        if end is None:
            continue
        text = " ".join(htmllib.unescape(_TAG_MARKUP.sub(" ", page[close + 1 : end.start()])).split())
        if text and text not in found:
            found.append(text)
    return categories, tags


_SECTION = re.compile(
    r"""<meta\b[^>]{0,300}?property\s*=\s*["']article:section["'][^>]{0,300}?content\s*=\s*["']([^"']{1,100})["']"""
    r"""|<meta\b[^>]{0,300}?content\s*=\s*["']([^"']{1,100})["'][^>]{0,300}?property\s*=\s*["']article:section["']""",
    re.IGNORECASE,
)


def sections(page: str) -> list[str]:
    """The page's OpenGraph ``article:section`` values (its category when no rel=category link names one)."""
    head_end = page.find("</head", 0, _SCAN_CHARS)
    found: list[str] = []
    for match in _SECTION.finditer(page, 0, head_end if head_end >= 0 else _SCAN_CHARS):
        value = " ".join(htmllib.unescape(match.group(1) or match.group(2)).split())
        if value and value not in found:
            found.append(value)
    return found[:_MAX_REL_LINKS]


# The publication date a page declares for itself, most specific first.
_DATE_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"""<meta\b[^>]{0,300}?(?:property|name|itemprop)\s*=\s*["'](?:article:published_time|"""
        r"""og:article:published_time|datePublished|publish[_-]?date|parsely-pub-date|sailthru\.date|"""
        r"""dc\.date\.issued|dcterms\.created|dc\.date)["'][^>]{0,300}?content\s*=\s*["']([^"']{8,40})["']""",
        r"""<meta\b[^>]{0,300}?content\s*=\s*["']([^"']{8,40})["'][^>]{0,300}?(?:property|name|itemprop)\s*=\s*"""
        r"""["'](?:article:published_time|og:article:published_time|datePublished)["']""",
        r""""datePublished"\s*:\s*"([^"]{8,40})\"""",
        r"""<time\b[^>]{0,300}?datetime\s*=\s*["']([^"']{8,40})["']""",
    )
]
_SCAN_CHARS = 512 * 1024
_META_PATTERNS = 2  # the first two of _DATE_PATTERNS and _UPDATED_PATTERNS look for <meta> tags


def declared_date(page: str, *, time_elements: bool = True, head_end: int | None = None) -> str | None:
    """The date the page states in its metadata (meta tags, JSON-LD, then the first ``<time>``), ISO UTC.

    ``head_end``: :func:`_head_end` of the page when the caller has it already."""
    return _first_date(page, _DATE_PATTERNS if time_elements else _DATE_PATTERNS[:-1],
                       _head_end(page) if head_end is None else head_end)


def _head_end(page: str) -> int:
    """Where the page's head ends (``</head>`` within the first ``_SCAN_CHARS``), else the end of that window.

    The ``<meta>`` patterns scan up to there: meta tags belong in the head, a page's body
    is most of its bytes, and each failed pattern would otherwise scan all of it.
    """
    head_end = page.find("</head>", 0, _SCAN_CHARS)
    return head_end if head_end >= 0 else min(len(page), _SCAN_CHARS)


def _first_date(page: str, patterns: list[re.Pattern[str]], head_end: int) -> str | None:
    """The first of ``patterns`` (in order) that finds a valid date in the page, as ISO UTC.

    The first two look for ``<meta>`` tags and scan the head (up to ``head_end``); the
    others scan the page's first ``_SCAN_CHARS``. Bounds, not slices: no copy of the page.
    """
    window_end = min(len(page), _SCAN_CHARS)
    for n, pattern in enumerate(patterns):
        match = pattern.search(page, 0, head_end if n < _META_PATTERNS else window_end)
        if match:
            moment = iso_utc(htmllib.unescape(match.group(1)))
            if moment:
                return moment
    return None


_UPDATED_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"""<meta\b[^>]{0,300}?(?:property|name|itemprop)\s*=\s*["'](?:article:modified_time|og:updated_time|"""
        r"""dateModified|last-modified|dcterms\.modified)["'][^>]{0,300}?content\s*=\s*["']([^"']{8,40})["']""",
        r"""<meta\b[^>]{0,300}?content\s*=\s*["']([^"']{8,40})["'][^>]{0,300}?(?:property|name|itemprop)\s*=\s*"""
        r"""["'](?:article:modified_time|og:updated_time|dateModified)["']""",
        r""""dateModified"\s*:\s*"([^"]{8,40})\"""",
    )
]


def declared_updated(page: str, *, head_end: int | None = None) -> str | None:
    """The last-modified date the page states in its metadata (meta tags, JSON-LD ``dateModified``), ISO UTC."""
    return _first_date(page, _UPDATED_PATTERNS, _head_end(page) if head_end is None else head_end)


def search_date(page: str, url: str | None) -> str | None:
    """htmldate's search of the whole page (costly); for pages that declare no date and feeds that give none."""
    found = find_date(
        page, url=url, original_date=True, extensive_search=True, outputformat="%Y-%m-%dT%H:%M:%S%z",
        max_date=datetime.now().astimezone().strftime("%Y-%m-%d"),
    )
    return iso_utc(found)


def iso_utc(value: str | None) -> str | None:
    """A page's declared date or datetime -> "YYYY-MM-DDTHH:MM:SSZ"; None when unreadable or implausible."""
    moment = parse_iso(value)
    if moment is None or not 1990 <= moment.year <= datetime.now().year + 1:
        return None
    return format_iso(moment)
