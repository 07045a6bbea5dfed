"""``feedstream serve``: the stream given back out as Atom and JSON Feed over HTTP.

Routes (``.atom`` or ``.json`` each):

- ``/feed.atom``                 every article, newest first
- ``/feeds/<source>.atom``       one feed's or newsletter's articles
- ``/tags/<tag>.atom``           articles carrying the tag

Query: ``before=<stream id>`` (the page of older articles; each page links the
next one with rel=next / ``next_url``), ``limit=`` (1-200, default 50).

An article with update events (issue 17) is listed once, at its first publication's place, as its
latest version (read through its ``{p}:latest:{id}`` pointer), with that version's time as its
Atom ``updated`` / JSON Feed ``date_modified``; update events in the stream itself (inline) are not
listed apart.

Validators: the ETag is a hash of the selection (stream ids, latest versions' ids and links),
Last-Modified the newest entry's (or latest version's) stream time; ``If-None-Match`` (or,
without it, ``If-Modified-Since``) that still matches gets 304 with no body.

The stdlib ThreadingHTTPServer is enough here: a feed reader polls every few
minutes, each request is one or a few XREVRANGE calls, and it keeps the web
process free of a framework. Filtered selections scan the stream backwards in
chunks and stop after ``SCAN_LIMIT`` entries, linking onwards from where they
stopped, so a rare tag never turns one request into a full-stream read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
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


def select_page(store: Store, match: Callable[[dict[str, Any]], bool], before: str, limit: int
                ) -> tuple[list[Item], str | None]:
    """Up to ``limit`` matching articles older than ``before``, newest first, and the next page's ``before``."""
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
            try:
                doc = json.loads(fields.get("article", "{}"))
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("event") != "updated" and match(doc):
                found.append((stream_id, doc))
                if len(found) == limit:
                    break
    # a full page (or a scan cut short) may have older matches: link on from where we stopped
    more = bool(store.read_stream_before(cursor, count=1))
    return found, cursor if more else None


def latest_versions(store: Store, items: list[Item]) -> tuple[list[Item], dict[str, str]]:
    """The items with each article's latest version in place of the first, and the stream id of that
    version by the first's stream id (two round trips for the page)."""
    latest = store.latest_versions([str(doc["id"]) for _, doc in items if doc.get("id")])
    out: list[Item] = []
    modified: dict[str, str] = {}
    for stream_id, doc in items:
        found = latest.get(str(doc.get("id")))
        if found:
            try:
                newer = json.loads(found["article"])
            except ValueError:
                newer = None
            if isinstance(newer, dict) and int(newer.get("version") or 1) > int(doc.get("version") or 1):
                doc = newer
                modified[stream_id] = found["stream_id"]
        out.append((stream_id, doc))
    return out, modified


def _matcher(kind: str | None, value: str) -> tuple[Callable[[dict[str, Any]], bool], str, str]:
    if kind == "feeds":
        return (lambda doc: doc.get("feed") == value), f"feedstream: {value}", f"urn:feedstream:feed:{value}"
    if kind == "tags":
        return ((lambda doc: value in (doc.get("tags") or [])), f"feedstream: tagged {value}",
                f"urn:feedstream:tag:{value}")
    return (lambda doc: True), "feedstream: all articles", "urn:feedstream:all"


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

        match, title, feed_id = _matcher(kind, value)
        items, next_before = self.server.page(match, before, limit)
        items, modified = latest_versions(self.server.store, items)
        base = self._base()
        stem = parts.path[: -len(fmt)]  # as requested: already %-quoted

        def url(ext: str, cursor: str | None) -> str:
            params = {k: v for k, v in (("before", cursor), ("limit", str(limit) if limit != DEFAULT_LIMIT else None))
                      if v and v != "+"}
            return base + stem + ext + (f"?{urlencode(params)}" if params else "")

        other = "json" if fmt == "atom" else "atom"
        meta = FeedMeta(title=title, self_url=url(fmt, before), alternate_url=url(other, before), home_url=base + "/",
                        feed_id=feed_id, next_url=url(fmt, next_before) if next_before else None)
        # Stream entries never change once added, so the selection (its stream ids and its articles'
        # latest versions) and the links fix the body: the ETag is known before rendering, and a 304
        # skips the render.
        fingerprint = "\n".join([fmt, repr(meta), *(f"{sid} {modified.get(sid, '')}" for sid, _ in items)])
        etag = '"' + hashlib.blake2b(fingerprint.encode(), digest_size=16).hexdigest() + '"'
        headers = {"Content-Type": ATOM_TYPE if fmt == "atom" else JSON_FEED_TYPE, "ETag": etag,
                   "Cache-Control": "no-cache"}
        newest = updated(items, modified)
        if newest:
            headers["Last-Modified"] = format_datetime(newest.replace(microsecond=0), usegmt=True)
        if self._not_modified(etag, newest):
            return 304, {k: v for k, v in headers.items() if k != "Content-Type"}, b""
        body = render_atom(meta, items, modified) if fmt == "atom" else render_json_feed(meta, items, modified)
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
        super().__init__(address, FeedHandler)

    def page(self, match: Callable[[dict[str, Any]], bool], before: str, limit: int) -> tuple[list[Item], str | None]:
        return select_page(self.store, match, before, limit)


def make_server(store: Store, host: str, port: int) -> FeedServer:
    """A bound (not yet serving) feed server; port 0 picks a free one (``.server_port``)."""
    return FeedServer(store, (host, port))


__all__ = ["FeedServer", "make_server", "select_page"]
