"""RSS 0.9x/1.0/2.0, RDF and Atom bytes -> ParsedFeed via feedparser, with an entity-expansion guard. Pure.

feedparser is only ever given a ``BytesIO``: given a string it fetches URLs
(no timeout, no size cap) and reads local paths.
"""

from __future__ import annotations

import calendar
import io
import re
import time
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

import feedparser
from feedparser.encodings import convert_to_utf8

from worker.errors import ParseError
from worker.feeds.common import (
    build_entry,
    clean,
    http_url,
    opaque,
    short,
    tag_list,
    text_to_html,
    unique_entries,
    warning_text,
)
from worker.models import Entry, ParsedFeed
from worker.text import bom_encoding, language_code
from worker.timefmt import iso_from_epoch

__all__ = ["parse_xml_feed"]

_HTML_TYPES = ("text/html", "application/xhtml+xml")
# Single-byte charsets that servers and templates declare by habit. A body that
# decodes as strict UTF-8 and has non-ASCII bytes is UTF-8 in practice: real
# Latin-1 text almost never forms valid multi-byte UTF-8 sequences throughout.
_HABITUAL_CHARSETS = frozenset({
    "us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1",
    "iso-8859-15", "latin-9", "windows-1252", "cp1252",
})
_XML_DECL_ENCODING = re.compile(rb"""^\s*<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
_HTML_START = re.compile(rb"<(?:!doctype\s+html|html[\s>/])", re.IGNORECASE)
_ROOT_ELEMENT = re.compile(rb"<([A-Za-z_][\w:.-]{0,60})")
# feedparser's own notion of where the prolog ends (sanitizer.replace_doctype).
_FIRST_ELEMENT = re.compile(rb"<\w")
_ENTITY_OR_CDATA = re.compile(rb"<!ENTITY|<!\[CDATA\[", re.IGNORECASE)
# The only entity declarations let through: an internal entity whose value is one
# character reference or a short literal without references or markup. The value
# length bounds what a reference can expand to (about 10x its own size), which
# stops both nested "billion laughs" and flat quadratic blow-ups; external
# (SYSTEM/PUBLIC) and parameter (%) entities never match.
_SAFE_ENTITY_DECL = re.compile(
    rb"""<!ENTITY\s+[A-Za-z_][\w.-]{0,64}\s+(?:"(?:&\#\w{1,8};|[^&%"<>]{0,32})"|'(?:&\#\w{1,8};|[^&%'<>]{0,32})')\s*>"""
)


_TTL = re.compile(r"\s*(\d{1,9})\s*$")
_MAX_TTL_MINUTES = 366 * 24 * 60  # beyond a year it is a typo, not a schedule


def parse_xml_feed(
    body: bytes, url: str, hdrs: dict[str, str], media_type: str, charset: str | None
) -> ParsedFeed:
    warnings: list[str] = []
    charset = _effective_charset(body, charset, warnings)
    # Decode up front with feedparser's own RFC 3023 logic, so the entity check
    # below sees exactly the UTF-8 bytes its parsers will see (a UTF-16 body
    # would otherwise hide "<!ENTITY" from a byte search). Whatever the server
    # called the type, we ask for XML semantics: declared charset first, then the
    # XML declaration, then BOM/UTF-8/windows-1252 fallbacks; "text/xml means
    # us-ascii" pedantry would only produce misleading warnings.
    sniff: dict[str, Any] = {}
    xml_type = "application/xml" + (f"; charset={charset}" if charset else "")
    data = convert_to_utf8({"content-type": xml_type}, body, sniff)
    if sniff.get("bozo_exception") is not None:
        warnings.append(str(sniff["bozo_exception"]))
    _refuse_unsafe_entities(data)

    response_headers = {
        "content-type": "application/xml; charset=utf-8" if sniff.get("encoding") else xml_type,
        # feedparser's base URI for relative links when it did not fetch itself.
        "content-location": url,
    }
    if hdrs.get("content-language"):
        response_headers["content-language"] = hdrs["content-language"]
    # No sanitising or link rewriting of entry HTML: it is never passed on as HTML,
    # only turned into text (extract.text_from_html_fragment drops scripts, styles and
    # markup), and on a full-content feed those two passes cost twice the parse itself.
    result = feedparser.parse(
        io.BytesIO(data),
        response_headers=response_headers,
        resolve_relative_uris=False,
        sanitize_html=False,
    )
    version: str = result.get("version") or ""
    bozo = result.get("bozo_exception") if result.get("bozo") else None
    malformed = bozo is not None and not isinstance(bozo, feedparser.ThingsNobodyCaresAboutButMe)
    if bozo is not None and str(bozo) not in warnings:
        warnings.append(str(bozo))

    raw_entries = list(result.get("entries") or [])
    if not raw_entries:
        if not version and (media_type in _HTML_TYPES or _looks_like_html(data)):
            raise ParseError("got an HTML page, not a feed")
        if malformed:
            raise ParseError(f"not a feed (malformed XML: {short(str(bozo))})")
        if not version:
            root = _ROOT_ELEMENT.search(data)
            found = f"root element <{root.group(1).decode('ascii', 'replace')}>" if root else "no XML element"
            raise ParseError(f"not a feed ({found}; expected rss, rdf:RDF or feed)")

    meta = result.get("feed") or {}
    feed_author = _person(meta) if version.startswith("atom") else None
    entries: list[Entry] = []
    skipped = 0
    for raw in raw_entries:
        entry = _xml_entry(raw, url, feed_author)
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    return ParsedFeed(
        title=_detail_text(meta, "title"),
        link=http_url(meta.get("link"), url),
        language=language_code(meta.get("language")),
        ttl_minutes=_ttl(meta.get("ttl")),
        entries=unique_entries(entries, warnings, skipped),
        warning=warning_text(warnings),
        hub=_link_of(meta, "hub", url),
        self_url=_link_of(meta, "self", url),
    )


def _link_of(meta: Mapping[str, Any], rel: str, base: str) -> str | None:
    """The first ``<link rel=...>`` (atom:link in RSS too) of the feed with this rel, absolute (WebSub)."""
    for link in meta.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == rel:
            found = http_url(link.get("href"), base)
            if found:
                return found
    return None


def _xml_entry(raw: dict[str, Any], base: str, feed_author: str | None) -> Entry | None:
    """One feedparser entry -> Entry, or None when it has no usable http(s) link."""
    link = http_url(raw.get("link"), base)
    if link is None:
        return None
    title = _detail_text(raw, "title")
    # dict.get: FeedParserDict maps a missing "updated_parsed" to "published_parsed" with a
    # DeprecationWarning; we ask for each key as it is.
    published = _iso_struct(dict.get(raw, "published_parsed")) or _iso_struct(dict.get(raw, "updated_parsed"))
    contents = raw.get("content") if isinstance(raw.get("content"), list) else []
    content = _longest_content(contents)
    # feedparser copies content into "summary" (without summary_detail) when an
    # entry has no summary of its own; that copy is not a summary.
    raw_summary = raw.get("summary")
    copied = any(isinstance(c, Mapping) and c.get("value") == raw_summary for c in contents)
    summary = None if copied else _detail_html(raw.get("summary_detail"), raw_summary)
    tags = [t.get("term") for t in raw.get("tags") or [] if isinstance(t, Mapping)]
    return build_entry(
        # Entries without a link were skipped above, so the link is always there to fall back on.
        guid=opaque(raw.get("id")) or link,
        url=link,
        title=title,
        author=_person(raw) or feed_author,
        published=published,
        content=content,
        summary=summary,
        tags=tag_list(tags),
        updated=_iso_struct(dict.get(raw, "updated_parsed")),
    )


def _person(obj: Mapping[str, Any]) -> str | None:
    """The author's name; feedparser splits "bob@x (Bob)" into author_detail."""
    detail = obj.get("author_detail")
    name = clean(detail.get("name")) if isinstance(detail, Mapping) else ""
    return name or clean(obj.get("author")) or None


def _detail_text(obj: Mapping[str, Any], key: str) -> str:
    """A title as plain text: markup stripped only when the feed says it is HTML."""
    value = obj.get(key)
    if not isinstance(value, str):
        return ""
    detail = obj.get(f"{key}_detail")
    kind = detail.get("type", "") if isinstance(detail, Mapping) else ""
    if kind in ("text/html", "application/xhtml+xml", "html", "xhtml"):
        value = _strip_tags(value)
    return clean(value)


def _detail_html(detail: Any, value: Any) -> str | None:
    """Content or summary as HTML; Atom type="text" content is escaped."""
    if not isinstance(value, str) or not value.strip():
        return None
    kind = detail.get("type", "") if isinstance(detail, Mapping) else ""
    if kind == "text/plain":
        return text_to_html(value)
    if kind and "html" not in kind and "xml" not in kind and not kind.startswith("text/"):
        return None  # e.g. base64 images in atom:content: not article text
    return value


def _longest_content(contents: list[Any]) -> str | None:
    best: str | None = None
    for item in contents:
        if isinstance(item, Mapping):
            value = _detail_html(item, item.get("value"))
            if value is not None and (best is None or len(value) > len(best)):
                best = value
    return best


def _refuse_unsafe_entities(data: bytes) -> None:
    """Refuse entity declarations that could expand: billion laughs, quadratic blow-up, XXE.

    expat (>= 2.4) stops nested expansion only after burning about a second and
    ~90 MB, and when it gives up feedparser falls back to its loose parser, which
    expands every declaration feedparser deems "safe" (no nested references, but
    any length): a 200 KB body then becomes a 400 MB string (measured). So look
    before parsing. feedparser lifts declarations from anywhere in the prolog,
    comments included, so the prolog is searched whole; after it, CDATA sections
    are skipped (articles about XML quote such things).
    """
    prolog_end = _prolog_end(data)
    pos = 0
    while match := _ENTITY_OR_CDATA.search(data, pos):
        at = match.start()
        if match.group().upper() != b"<!ENTITY":
            if at < prolog_end:
                pos = at + 2
                continue
            close = data.find(b"]]>", match.end())
            if close < 0:
                return
            pos = close + 3
            continue
        if not _SAFE_ENTITY_DECL.match(data, at):
            raise ParseError("refusing XML entity declarations other than short literals "
                             "(external, parameter, nested or long entities: entity-expansion/XXE risk)")
        pos = at + 2


def _prolog_end(data: bytes) -> int:
    first = _FIRST_ELEMENT.search(data)
    return first.start() + 1 if first else len(data)


def _looks_like_html(data: bytes) -> bool:
    return bool(_HTML_START.search(data, 0, 8192))


def _effective_charset(body: bytes, declared: str | None, warnings: list[str]) -> str | None:
    """The charset to decode with: a BOM's, else the server's unless it is a habitual Latin-1 on UTF-8."""
    # A BOM is the strongest signal there is; feedparser, told "application/xml"
    # without a charset, would try UTF-8 before the BOM and read UTF-16 as NULs.
    bom = bom_encoding(body)
    if bom is not None:
        return bom[0]
    stated = declared
    if stated is None:
        decl = _XML_DECL_ENCODING.match(body)
        stated = decl.group(1).decode("ascii").lower() if decl else None
    if stated in _HABITUAL_CHARSETS and not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return declared
        warnings.append(f"declared {stated}, but the body is UTF-8; read as UTF-8")
        return "utf-8"
    return declared


def _iso_struct(value: Any) -> str | None:
    """feedparser's UTC struct_time -> "YYYY-MM-DDTHH:MM:SSZ"."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return iso_from_epoch(calendar.timegm(value))
    except (ValueError, OverflowError, OSError):
        return None


def _ttl(value: Any) -> int | None:
    match = _TTL.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    minutes = int(match.group(1))
    return minutes if 0 < minutes <= _MAX_TTL_MINUTES else None


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _strip_tags(markup: str) -> str:
    collector = _TextCollector()
    collector.feed(markup)
    collector.close()
    return "".join(collector.parts)
