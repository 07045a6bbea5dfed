"""Sitemap bytes -> entries (or an index's child sitemaps). Pure: no network, no files, no Redis.

Reads the sitemaps.org protocol (``<urlset><url><loc>``, ``<lastmod>``) with Google News'
extension (``news:title``, ``news:publication_date``, ``news:language``), and sitemap indexes
(``<sitemapindex><sitemap><loc>``). Only entries dated within ``max_age`` are listed: a sitemap
lists a whole site, and a source wants its recent articles (an entry with no date cannot be
shown to be recent and is left out). A gzip body is inflated here, within a cap; the XML is read
by lxml with no entities, no DTD and no network. Elements are matched by local name, so a
sitemap that forgets its namespace still reads.

Why not ``ultimate-sitemap-parser``: see docs/sources.md (it fetches by itself).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lxml import etree

from worker.errors import ParseError
from worker.feeds.common import build_entry, clean, http_url, short
from worker.models import Entry
from worker.text import language_code
from worker.timefmt import epoch_from_iso, iso_utc, parse_iso

__all__ = ["MAX_SITEMAP_BYTES", "SitemapDoc", "is_gzip", "parse_sitemap", "robots_sitemaps", "same_site"]

# The protocol's own limits: 50,000 URLs and 50 MiB uncompressed per file.
MAX_SITEMAP_BYTES = 50 * 1024 * 1024
MAX_URLS = 50_000
_GZIP_MAGIC = b"\x1f\x8b"
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
# sitemaps.org's and Google News's (by their ends: http/https and www variants occur in the wild)
_READ_NAMESPACES = ("/sitemap/0.9", "/sitemap-news/0.9")


@dataclass
class SitemapDoc:
    """What one sitemap file says: entries (a urlset) or child sitemaps (an index)."""

    index: bool = False
    entries: list[Entry] = field(default_factory=list)
    children: list[str] = field(default_factory=list)  # an index's sitemaps within max_age (or undated)
    listed: int = 0  # <url> or <sitemap> elements in the file
    old: int = 0  # left out: dated before max_age
    undated: int = 0  # left out: no date (urlset only)
    language: str | None = None  # news:language, when every entry that has one says the same

    def warning(self) -> str | None:
        notes = []
        if self.old:
            notes.append(f"{self.old} older than max_age left out")
        if self.undated:
            notes.append(f"{self.undated} without a date left out")
        return "; ".join(notes) or None


def is_gzip(body: bytes) -> bool:
    return body[:2] == _GZIP_MAGIC


def _gunzip(body: bytes, cap: int) -> bytes:
    """Inflate a gzip body, refusing one that would grow past ``cap`` (a 1 GB bomb stops at the cap)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, cap + 1)
    except zlib.error as exc:
        raise ParseError(f"sitemap: broken gzip ({exc})") from None
    if len(out) > cap or inflater.unconsumed_tail:
        raise ParseError(f"sitemap: gzip inflates to more than {cap // (1024 * 1024)} MiB: refused")
    return out


def _local(element: etree._Element) -> str:
    tag = element.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _fields(item: etree._Element) -> dict[str, str]:
    """Local name -> text of the first of each element under a ``<url>`` or ``<sitemap>`` (one walk).

    Elements of other extensions (image:, video:, xhtml:) are skipped: their titles are not the page's.
    """
    found: dict[str, str] = {}
    for element in item.iter():
        tag = element.tag
        if not isinstance(tag, str) or not element.text:
            continue
        namespace, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
        if namespace and not namespace.endswith(_READ_NAMESPACES):
            continue
        if name not in found:
            found[name] = clean(element.text)
    return found


def _date(value: str) -> str | None:
    moment = parse_iso(value)
    return iso_utc(moment) if moment else None


def parse_sitemap(body: bytes, *, url: str, now: float, max_age: float,
                  cap: int = MAX_SITEMAP_BYTES) -> SitemapDoc:
    """A sitemap's (or index's) bytes -> SitemapDoc; raises ParseError when it is not one we read.

    ``url``: where it was served from (relative locs resolve against it); entries dated before
    ``now - max_age`` are left out (counted in ``old``).
    """
    if is_gzip(body):
        body = _gunzip(body, cap)
    if len(body) > cap:
        raise ParseError(f"sitemap: larger than {cap // (1024 * 1024)} MiB: refused")
    if _ENTITY.search(body[:65536]):
        raise ParseError("sitemap: declares entities (refused: a sitemap has no use for them)")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             recover=False, remove_comments=True, remove_pis=True)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"sitemap: malformed XML ({short(str(exc), 120)})") from None
    if root is None:
        raise ParseError("sitemap: empty document")
    kind = _local(root)
    if kind not in ("urlset", "sitemapindex"):
        raise ParseError(f"sitemap: not a sitemap (root element <{kind}>; expected urlset or sitemapindex)")
    cutoff = now - max_age
    doc = SitemapDoc(index=kind == "sitemapindex")
    languages: set[str] = set()
    for item in root:
        name = _local(item)
        if name not in ("url", "sitemap"):
            continue
        doc.listed += 1
        if doc.listed > MAX_URLS:
            raise ParseError(f"sitemap: lists more than {MAX_URLS:,} URLs (the protocol's limit): refused")
        values = _fields(item)
        loc = http_url(values.get("loc"), url)
        if loc is None:
            continue
        if doc.index:
            lastmod = epoch_from_iso(values.get("lastmod"))
            if lastmod is not None and lastmod < cutoff:
                doc.old += 1
            elif loc not in doc.children:
                doc.children.append(loc)
            continue
        entry = _news_entry(values, loc)
        when = epoch_from_iso(entry.published or entry.updated)
        if when is None:
            doc.undated += 1
        elif when < cutoff:
            doc.old += 1
        else:
            doc.entries.append(entry)
            language = language_code(values.get("language"))
            if language:
                languages.add(language)
    if len(languages) == 1:
        doc.language = languages.pop()
    return doc


def _news_entry(values: dict[str, str], loc: str) -> Entry:
    """One ``<url>``: its loc is its id; the news extension's title and date when it has them, else lastmod."""
    lastmod = _date(values.get("lastmod", ""))
    published = _date(values.get("publication_date", "")) or lastmod
    keywords = [k.strip() for k in values.get("keywords", "").split(",") if k.strip()]
    return build_entry(guid=loc, url=loc, title=values.get("title", ""), author=None,
                       published=published, content=None, summary=None, tags=keywords[:20], updated=lastmod)


def robots_sitemaps(body: bytes, base: str) -> list[str]:
    """The ``Sitemap:`` lines of a robots.txt body, absolute, in order (at most 20)."""
    found: list[str] = []
    for line in body[:512 * 1024].decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "sitemap":
            absolute = http_url(value.split("#", 1)[0].strip(), base)
            if absolute and absolute not in found:
                found.append(absolute)
    return found[:20]


def same_site(url: str, other: str) -> bool:
    """Whether two URLs are on one host (``www.`` aside): a sitemap speaks only for its own host."""

    def host(u: str) -> str:
        return (urlsplit(u).hostname or "").lower().removeprefix("www.")

    return host(url) == host(other) and bool(host(url))
