"""``feedstream serve``: the stream given back out as Atom and JSON Feed over HTTP.

Routes (``.atom`` or ``.json`` each):

- ``/feed.atom``                 every article, newest first
- ``/feeds/<source>.atom``       one feed's or newsletter's articles
- ``/tags/<tag>.atom``           articles carrying the tag
- ``/api/...``                   the admin API (sources; worker/out/api.py), when the server is given one

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

import contextlib
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

from worker.out import api
from worker.out.render import ATOM_TYPE, JSON_FEED_TYPE, FeedMeta, Item, render_atom, render_json_feed, updated
from worker.sources.manage import SourceAdmin
from worker.store import Store

log = logging.getLogger("feedstream.serve")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
SCAN_CHUNK = 200
SCAN_LIMIT = 5000
DRAIN_LIMIT = 16 * 1024 * 1024  # an over-limit request body up to this size is read and dropped
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
    timeout = 60  # seconds a connection may sit idle (or trickle a request) before it is closed
    # headers and body go out as two writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms a request on Linux loopback)
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    # the admin API's writes (anything else than GET/HEAD outside /api/ is answered 405)
    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _discard(self, length: int) -> None:
        with contextlib.suppress(OSError):
            while length > 0:
                chunk = self.rfile.read(min(length, 65536))
                if not chunk:
                    return
                length -= len(chunk)

    def _admin(self) -> tuple[int, dict[str, str], bytes]:
        """A request under /api/: read its body (within the limit) and let the API answer it."""
        admin = self.server.admin
        if admin is None:
            return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"no admin API on this server\n"
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return _error(411, "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            return _error(400, "Content-Length is not a number")
        if length < 0 or length > api.body_limit(self.path):
            self.close_connection = True
            # read (and drop) a body up to a few times the limit, so that a client still sending it
            # gets the 413 rather than a reset connection; a larger claim is not read at all
            if 0 < length <= DRAIN_LIMIT:
                self._discard(length)
            return _error(413, f"the body is over {api.body_limit(self.path):,} bytes")
        body = self.rfile.read(length) if length else b""
        answer = api.handle(admin, self.server.admin_token, self.command, self.path, dict(self.headers.items()),
                            body)
        headers = {"Content-Type": answer.content_type, "Cache-Control": "no-store", **(answer.headers or {})}
        return answer.status, headers, answer.body

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
        if parts.path == "/api" or parts.path.startswith("/api/"):
            return self._admin()
        if self.command not in ("GET", "HEAD"):
            return 405, {"Content-Type": "text/plain; charset=utf-8", "Allow": "GET, HEAD"}, b"feeds are read-only\n"
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


def _error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": api.JSON_TYPE}, (json.dumps({"error": message}) + "\n").encode()


class FeedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer holding the store every handler reads through, and the admin API's operations."""

    daemon_threads = True

    def __init__(self, store: Store, address: tuple[str, int], admin: SourceAdmin | None = None,
                 admin_token: str | None = None) -> None:
        self.store = store
        self.admin = admin
        self.admin_token = admin_token
        super().__init__(address, FeedHandler)

    def page(self, match: Callable[[dict[str, Any]], bool], before: str, limit: int) -> tuple[list[Item], str | None]:
        return select_page(self.store, match, before, limit)


def make_server(store: Store, host: str, port: int, admin: SourceAdmin | None = None,
                admin_token: str | None = None) -> FeedServer:
    """A bound (not yet serving) feed server; port 0 picks a free one (``.server_port``).

    With ``admin``, it also answers the admin API under /api/ (writes need ``admin_token``).
    """
    return FeedServer(store, (host, port), admin, admin_token)


__all__ = ["FeedServer", "make_server", "select_page"]
