"""``feedstream serve``: the stream given back out as Atom and JSON Feed over HTTP.

Routes (``.atom`` or ``.json`` each):

- ``/feed.atom``                 every article, newest first
- ``/feeds/<source>.atom``       one feed's or newsletter's articles
- ``/tags/<tag>.atom``           articles carrying the tag

Query: ``before=<stream id>`` (the page of older articles; each page links the
next one with rel=next / ``next_url``), ``limit=`` (1-200, default 50).

Validators: the ETag is a hash of the selection (stream ids and links), Last-Modified the newest entry's
stream time; ``If-None-Match`` (or, without it, ``If-Modified-Since``) that
still matches gets 304 with no body.

The stdlib ThreadingHTTPServer is enough here: a feed reader polls every few
minutes, each request is a few Redis calls, and it keeps the web process free of
a framework. Each route reads its own feeds-out index (a stream of the article
stream's ids, per source and per tag, written by the publish script with the
XADD), so a page of a quiet tag reads only its own entries however many others
are newer, and the ETag is known from the ids alone: a 304 reads no entry.
Articles published before the indexes existed (issue 18) are found by scanning
the stream backwards below the first indexed id, in chunks, stopping after
``SCAN_LIMIT`` entries and linking onwards from there, until they are trimmed away.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import redis

from worker.out.render import ATOM_TYPE, JSON_FEED_TYPE, FeedMeta, Item, render_atom, render_json_feed, updated
from worker.store import Store

log = logging.getLogger("feedstream.serve")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
SCAN_CHUNK = 200
SCAN_LIMIT = 5000
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_ROUTE = re.compile(r"^/(?:feed|(feeds|tags)/([^/]{1,200}))\.(atom|json)$")


class BadRequest(ValueError):
    """The request asks for something malformed (400)."""


def _older(a: str, b: str) -> str:
    """The older of two stream ids."""
    return min(a, b, key=lambda sid: tuple(int(part) for part in sid.split("-")))


def scan_page(store: Store, match: Callable[[dict[str, Any]], bool], before: str, limit: int
              ) -> tuple[list[Item], str | None]:
    """Up to ``limit`` matching articles older than ``before`` found by scanning the stream, newest first, and
    the next page's ``before``: for articles published before the feeds-out indexes existed."""
    found: list[Item] = []
    cursor = before
    scanned = 0
    while len(found) < limit and scanned < SCAN_LIMIT:
        chunk = store.read_stream_before(cursor, count=SCAN_CHUNK)
        if not chunk:
            return found, None
        for stream_id, fields in chunk:
            scanned += 1
            cursor = stream_id
            doc = _document(fields)
            if doc is not None and match(doc):
                found.append((stream_id, doc))
                if len(found) == limit:
                    break
    # a full page (or a scan cut short) may have older matches: link on from where we stopped
    more = bool(store.read_stream_before(cursor, count=1))
    return found, cursor if more else None


def _document(fields: dict[str, str]) -> dict[str, Any] | None:
    try:
        doc = json.loads(fields.get("article", "{}"))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


@dataclass
class Page:
    """One page of a route: its stream ids (known before any entry is read) and the next page's ``before``."""

    ids: list[str]
    next_before: str | None
    scanned: dict[str, dict[str, Any]]  # documents already read by a scan of the unindexed part

    def items(self, store: Store) -> list[Item]:
        """The page's articles, newest first (entries trimmed from the stream meanwhile are left out)."""
        wanted = [sid for sid in self.ids if sid not in self.scanned]
        read = {sid: doc for sid, fields in store.entries(wanted) if (doc := _document(fields)) is not None}
        read.update(self.scanned)
        return [(sid, read[sid]) for sid in self.ids if sid in read]


def select_page(store: Store, route: Route, before: str, limit: int, unindexed: bool = True) -> Page:
    """The page of ``route`` older than ``before``: ids from its feeds-out index, then, when the index has no
    more and the stream may hold articles from before the indexes (``unindexed``), from a scan of those."""
    ids = store.index_ids(route.index, before, limit + 1)
    if len(ids) > limit:
        return Page(ids[:limit], ids[limit - 1], {})
    since = store.out_since()
    if since is not None and not unindexed:
        return Page(ids, None, {})  # nothing older than the indexes (the usual case)
    cursor = ids[-1] if ids else before
    start = cursor if since is None else (since if cursor == "+" else _older(cursor, since))
    older, next_before = scan_page(store, route.match, start, limit - len(ids))
    return Page(ids + [sid for sid, _ in older], next_before, dict(older))


@dataclass(frozen=True)
class Route:
    """What a path asks for: its feeds-out index, the match for unindexed articles, the feed's title and id."""

    index: str
    match: Callable[[dict[str, Any]], bool]
    title: str
    feed_id: str


def route_for(store: Store, kind: str | None, value: str) -> Route:
    if kind == "feeds":
        return Route(store.out_index_key("feed", value), lambda doc: doc.get("feed") == value,
                     f"feedstream: {value}", f"urn:feedstream:feed:{value}")
    if kind == "tags":
        return Route(store.out_index_key("tag", value), lambda doc: value in (doc.get("tags") or []),
                     f"feedstream: tagged {value}", f"urn:feedstream:tag:{value}")
    return Route(store.out_index_key("all"), lambda doc: True, "feedstream: all articles", "urn:feedstream:all")


class FeedHandler(BaseHTTPRequestHandler):
    """One request; the server object carries the store."""

    server: FeedServer
    protocol_version = "HTTP/1.1"
    server_version = "feedstream"
    # headers and body go out as two writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms a request on Linux loopback)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        try:
            status, headers, body = self._respond()
        except BadRequest as exc:
            status, headers, body = 400, {"Content-Type": "text/plain; charset=utf-8"}, f"{exc}\n".encode()
        except redis.RedisError as exc:
            log.warning("stream unreadable: %s", exc)
            status, headers, body = 503, {"Content-Type": "text/plain; charset=utf-8", "Retry-After": "30"}, \
                b"the stream cannot be read right now\n"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and status != 304:
            self.wfile.write(body)

    def _base(self) -> str:
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_port}"
        return f"http://{host}"

    def _respond(self) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(self.path)
        if parts.path in ("/", "/healthz"):
            return 200, {"Content-Type": "text/plain; charset=utf-8"}, b"feedstream: /feed.atom /feed.json\n"
        route = _ROUTE.match(parts.path)
        if not route:
            return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"not found\n"
        kind, raw_value, fmt = route.groups()
        value = unquote(raw_value or "")
        query = parse_qs(parts.query)
        before = (query.get("before") or ["+"])[0]
        if before != "+" and not _STREAM_ID.match(before):
            raise BadRequest("before must be a stream id like 1732400000000-0")
        try:
            limit = int((query.get("limit") or [DEFAULT_LIMIT])[0])
        except ValueError:
            raise BadRequest("limit must be a number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be 1-{MAX_LIMIT}")

        route = route_for(self.server.store, kind, value)
        page = select_page(self.server.store, route, before, limit, self.server.unindexed())
        next_before = page.next_before
        base = self._base()
        stem = parts.path[: -len(fmt)]  # as requested: already %-quoted

        def url(ext: str, cursor: str | None) -> str:
            params = {k: v for k, v in (("before", cursor), ("limit", str(limit) if limit != DEFAULT_LIMIT else None))
                      if v and v != "+"}
            return base + stem + ext + (f"?{urlencode(params)}" if params else "")

        other = "json" if fmt == "atom" else "atom"
        meta = FeedMeta(title=route.title, self_url=url(fmt, before), alternate_url=url(other, before),
                        home_url=base + "/", feed_id=route.feed_id,
                        next_url=url(fmt, next_before) if next_before else None)
        # Stream entries never change once added, so the selection (its stream ids) and the
        # links fix the body: the ETag is known before reading entries, and a 304 reads none.
        fingerprint = "\n".join([fmt, repr(meta), *page.ids])
        etag = '"' + hashlib.blake2b(fingerprint.encode(), digest_size=16).hexdigest() + '"'
        headers = {"Content-Type": ATOM_TYPE if fmt == "atom" else JSON_FEED_TYPE, "ETag": etag,
                   "Cache-Control": "no-cache"}
        newest = updated([(sid, {}) for sid in page.ids])
        if newest:
            headers["Last-Modified"] = format_datetime(newest.replace(microsecond=0), usegmt=True)
        if self._not_modified(etag, newest):
            return 304, {k: v for k, v in headers.items() if k != "Content-Type"}, b""
        items = page.items(self.server.store)
        body = render_atom(meta, items) if fmt == "atom" else render_json_feed(meta, items)
        return 200, headers, body

    def _not_modified(self, etag: str, newest: Any) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:  # RFC 9110: If-Modified-Since is ignored when If-None-Match is present
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            return "*" in tags or etag in tags
        ims = self.headers.get("If-Modified-Since")
        if ims and newest is not None:
            try:
                since = parsedate_to_datetime(ims)
            except (TypeError, ValueError):
                return False
            return newest.replace(microsecond=0) <= since
        return False


class FeedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the store every handler reads through."""

    daemon_threads = True

    def __init__(self, store: Store, address: tuple[str, int]) -> None:
        self.store = store
        self._unindexed = True
        super().__init__(address, FeedHandler)

    def unindexed(self) -> bool:
        """Whether the stream may still hold articles published before the feeds-out indexes. Once it does not
        (they were trimmed, or there never were any), it never will again: the answer is kept."""
        if self._unindexed:
            since = self.store.out_since()
            self._unindexed = since is None or bool(self.store.read_stream_before(since, count=1))
        return self._unindexed


def make_server(store: Store, host: str, port: int) -> FeedServer:
    """A bound (not yet serving) feed server; port 0 picks a free one (``.server_port``)."""
    return FeedServer(store, (host, port))


__all__ = ["FeedServer", "Page", "Route", "make_server", "route_for", "select_page"]
