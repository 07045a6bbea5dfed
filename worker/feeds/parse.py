"""Feed bytes -> ``ParsedFeed``. Pure: no network, no files, no Redis.

RSS 0.9x/1.0/2.0 and Atom are read by feedparser, JSON Feed 1.0/1.1 by our own
reader (feedparser 6.0.x has none). Every failure leaves as ``ParseError`` with
a plain message; malformed input that still yields entries is a warning
(``ParsedFeed.warning``), not a failure.

The body is sniffed here and read by :mod:`xml` or :mod:`jsonfeed`.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping

from worker.errors import ParseError
from worker.feeds.common import short
from worker.feeds.jsonfeed import parse_json_feed
from worker.feeds.xml import parse_xml_feed
from worker.models import ParsedFeed

__all__ = ["parse_feed"]

_JSON_TYPES = ("application/feed+json", "application/json")
_WS = b" \t\r\n\f\v"


def parse_feed(body: bytes, *, url: str, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Feed bytes -> ParsedFeed.

    ``url`` is the address the body was finally served from; relative links
    resolve against it. ``headers`` are the response headers (any case); only
    Content-Type and Content-Language are read. RSS 0.9x/1.0/2.0 and Atom are
    read via feedparser, JSON Feed 1.0/1.1 by our own reader.

    Entries keep document order; those without an http(s) link are skipped and
    counted in ``warning``, as is any complaint about malformed input that was
    still read. Raises ``ParseError`` (and nothing else) when the body is not a
    feed at all: empty, an HTML page, malformed XML with no entries, JSON that is
    not a JSON Feed, or XML declaring entities that could expand without bound.
    """
    try:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise ParseError(f"expected bytes, got {type(body).__name__}")
        body = bytes(body)
        hdrs = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        media_type, charset = _content_type(hdrs.get("content-type", ""))
        start = body.lstrip(_WS)
        start = start[len(codecs.BOM_UTF8):].lstrip(_WS) if start.startswith(codecs.BOM_UTF8) else start
        if not start:
            raise ParseError("empty body")
        json_type = media_type in _JSON_TYPES or media_type.endswith("+json")
        # The body decides; the header only breaks the tie for bodies that are not XML.
        if start[:1] in (b"{", b"[") or (json_type and start[:1] != b"<"):
            return parse_json_feed(body, url)
        return parse_xml_feed(body, url, hdrs, media_type, charset)
    except ParseError:
        raise
    except Exception as exc:  # a parser bug must not become an unrecorded job crash
        raise ParseError(f"unreadable feed ({type(exc).__name__}: {short(str(exc))})") from exc


def _content_type(value: str) -> tuple[str, str | None]:
    """("media/type", charset or None) from a Content-Type header value."""
    media, _, params = value.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "charset":
            charset = val.strip().strip("\"'").lower() or None
    return media.strip().lower(), charset
