"""A page's metadata (title, author, date, site, image, categories, tags) at a fraction of the usual cost.

Why not ``trafilatura.extract_metadata`` (``bare_extraction(with_metadata=True)``):
on the corpus it costs about half as much again as the extraction itself, and
most of that goes on work a feed worker does not need: htmldate's search for a
date (it deep-copies the whole tree first) when the feed already dates every
entry, an XPath hunt for a byline (another deep copy) when the feed names the
author, and licence detection. This module runs trafilatura's own cheap parts
(meta tags, OpenGraph, JSON-LD, title, canonical link) on
the tree the extraction is about to use, reads the declared publication date
and the rel=category/tag links from the raw page with bounded regular
expressions, and calls the expensive
parts only when the feed leaves a gap (no author, no date).

Pure: a parsed tree and the page string in, :class:`PageMeta` out. Uses
trafilatura's metadata helpers, which are not in its ``__all__``; the version
range in pyproject.toml pins the API they rely on.
"""

from __future__ import annotations

import html as htmllib
import re
from dataclasses import dataclass, field
from datetime import datetime

from htmldate import find_date
from lxml.html import HtmlElement
from trafilatura.metadata import (
    examine_meta,
    extract_author,
    extract_meta_json,
    extract_sitename,
    extract_title,
    extract_url,
)

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
    document = extract_meta_json(tree, document)
    title = document.title or extract_title(tree)
    author = document.author
    if not author and need_author:
        author = extract_author(tree)
    sitename = (document.sitename or extract_sitename(tree) or "").lstrip("@") or None
    # a <time> element may date a sidebar item; trusted only when the feed gives no date
    published = declared_date(page, time_elements=need_date)
    if published is None and need_date:
        published = search_date(page, url)
    return PageMeta(
        title=" ".join((title or "").split()) or None,
        author=author or None,
        published=published,
        updated=declared_updated(page),
        url=document.url or extract_url(tree, url) or None,
        sitename=sitename,
        description=document.description or None,
        image=document.image or None,
        categories=list(document.categories or []) or rel_links(page, "category") or sections(page),
        tags=list(document.tags or []) or rel_links(page, "tag"),
    )


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
    found: list[str] = []
    window = page[: _SCAN_CHARS * 2]
    at = 0
    while len(found) < _MAX_REL_LINKS:
        # str.find for the rare attribute, then look around it: a regex tried at every
        # "<a" cost more than the rest of the metadata together
        at = window.find("rel=", at)
        if at < 0:
            break
        start = window.rfind("<", max(0, at - _MAX_ANCHOR_CHARS), at)
        close = window.find(">", at, at + _MAX_ANCHOR_CHARS)
        at += 4
        if start < 0 or close < 0 or window[start + 1 : start + 3].lower() not in ("a ", "a\n", "a\t"):
            continue
        attr = _REL_ATTR.search(window, start, close + 1)
        if attr is None:
            continue
        rels = attr.group(1).lower().split()
        if not ((kind == "category" and "category" in rels) or (kind == "tag" and "tag" in rels
                                                                and "category" not in rels)):
            continue
        end = _ANCHOR_END.search(window, close, close + _MAX_ANCHOR_CHARS)
        if end is None:
            continue
        text = " ".join(htmllib.unescape(_TAG_MARKUP.sub(" ", window[close + 1 : end.start()])).split())
        if text and text not in found:
            found.append(text)
    return found


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


def declared_date(page: str, *, time_elements: bool = True) -> str | None:
    """The date the page states in its metadata (meta tags, JSON-LD, then the first ``<time>``), ISO UTC."""
    return _first_date(page, _DATE_PATTERNS if time_elements else _DATE_PATTERNS[:-1], meta_patterns=2)


def _first_date(page: str, patterns: list[re.Pattern[str]], *, meta_patterns: int) -> str | None:
    """The first of ``patterns`` (in order) that finds a valid date in the page, as ISO UTC.

    The first ``meta_patterns`` look for ``<meta>`` tags, which belong in the head: they
    scan up to ``</head>`` when the page has one (a page's body is most of its bytes, and
    each failed pattern would otherwise scan all of it); the others scan the page's start.
    """
    window = page[:_SCAN_CHARS]
    head_end = window.find("</head>")
    head = window[:head_end] if head_end >= 0 else window
    for n, pattern in enumerate(patterns):
        match = pattern.search(head if n < meta_patterns else window)
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


def declared_updated(page: str) -> str | None:
    """The last-modified date the page states in its metadata (meta tags, JSON-LD ``dateModified``), ISO UTC."""
    return _first_date(page, _UPDATED_PATTERNS, meta_patterns=2)


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
