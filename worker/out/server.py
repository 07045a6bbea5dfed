"""``feedstream serve``: the stream given back out as Atom and JSON Feed over HTTP.

Routes (``.atom`` or ``.json`` each):

- ``/feed.atom``                 every article, newest first
- ``/feeds/<source>.atom``       one feed's or newsletter's articles
- ``/tags/<tag>.atom``           articles carrying the tag
- ``/api/...``                   the admin API (sources; worker/out/api.py), when the server is given one
- ``/websub/<source>/<token>``   WebSub callbacks of our subscriptions (worker/push/subscriber.py)
- ``/hub``                       our WebSub hub for these feeds (worker/out/hub.py), with FEEDSTREAM_PUBLIC_URL

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

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import redis

from worker.out import api
from worker.out.render import ATOM_TYPE, JSON_FEED_TYPE, FeedMeta, Item, render_atom, render_json_feed, updated
from worker.push.subscriber import Subscriber, refuse_too_large
from worker.push.websub import MAX_PUSH_BYTES
from worker.sources.manage import SourceAdmin
from worker.store import Store

if TYPE_CHECKING:
    from worker.out.hub import Hub

log = logging.getLogger("feedstream.serve")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
SCAN_CHUNK = 200
SCAN_LIMIT = 5000
HUB_FORM_BYTES = 64 * 1024
DRAIN_LIMIT = 16 * 1024 * 1024  # an over-limit request body up to this size is read and dropped
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
            # update events in the stream itself (inline) are shown through their article, not apart
            if doc is not None and doc.get("event") != "updated" and match(doc):
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
    """One page of a route: its stream ids and their articles' ids (known before any entry is read), and
    the next page's ``before``."""

    ids: list[tuple[str, str]]  # (stream id, article id), newest first
    next_before: str | None
    scanned: dict[str, dict[str, Any]]  # documents already read by a scan of the unindexed part

    def modified(self, store: Store) -> dict[str, str]:
        """The stream id of each updated article's latest version, by its first publication's stream id
        (issue 17), read from the version pointers alone."""
        latest = store.latest_pointers([article_id for _, article_id in self.ids if article_id])
        return {sid: latest[article_id] for sid, article_id in self.ids if article_id in latest}

    def items(self, store: Store) -> tuple[list[Item], dict[str, str]]:
        """The page's articles, newest first, each as its latest version, and the versions' stream ids
        (entries trimmed from the stream meanwhile are left out)."""
        wanted = [sid for sid, _ in self.ids if sid not in self.scanned]
        read = {sid: doc for sid, fields in store.entries(wanted) if (doc := _document(fields)) is not None}
        read.update(self.scanned)
        return latest_versions(store, [(sid, read[sid]) for sid, _ in self.ids if sid in read])


def select_page(store: Store, route: Route, before: str, limit: int, unindexed: bool = True) -> Page:
    """The page of ``route`` older than ``before``: ids from its feeds-out index, then, when the index has no
    more and the stream may hold articles from before the indexes (``unindexed``), from a scan of those."""
    ids = store.index_ids(route.index, before, limit + 1)
    if len(ids) > limit:
        return Page(ids[:limit], ids[limit - 1][0], {})
    since = store.out_since()
    if since is not None and not unindexed:
        return Page(ids, None, {})  # nothing older than the indexes (the usual case)
    cursor = ids[-1][0] if ids else before
    start = cursor if since is None else (since if cursor == "+" else _older(cursor, since))
    older, next_before = scan_page(store, route.match, start, limit - len(ids))
    return Page(ids + [(sid, str(doc.get("id") or "")) for sid, doc in older], next_before, dict(older))


@dataclass(frozen=True)
class Route:
    """What a path asks for: its feeds-out index, the match for unindexed articles, the feed's title and id."""

    index: str
    match: Callable[[dict[str, Any]], bool]
    title: str
    feed_id: str


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

    def _refuse_body(self, length: int) -> None:
        """Before answering 413: close afterwards, and read (and drop) a body up to DRAIN_LIMIT.

        A client still sending its body then reads the 413 rather than a reset connection or a
        broken pipe; a larger claim is not read at all.
        """
        self.close_connection = True
        if 0 < length <= DRAIN_LIMIT:
            self._discard(length)

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
            self._refuse_body(length)
            return _error(413, f"the body is over {api.body_limit(self.path):,} bytes")
        body = self.rfile.read(length) if length else b""
        answer = api.handle(admin, self.server.admin_token, self.command, self.path, dict(self.headers.items()),
                            body)
        headers = {"Content-Type": answer.content_type, "Cache-Control": "no-store", **(answer.headers or {})}
        return answer.status, headers, answer.body

    def _websub(self, path: str, query: str) -> tuple[int, dict[str, str], bytes]:
        """A hub's request to one of our WebSub callbacks: its body read within the push cap."""
        subscriber = self.server.websub
        if subscriber is None:
            return 404, {"Content-Type": "text/plain; charset=utf-8"}, b"no WebSub subscriptions here\n"
        body = b""
        if self.command == "POST":
            try:
                length = int(self.headers.get("Content-Length") or -1)
            except ValueError:
                length = -1
            if length < 0 or self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                return 411, {"Content-Type": "text/plain; charset=utf-8"}, b"send a Content-Length\n"
            if length > MAX_PUSH_BYTES:
                self._refuse_body(length)
                return refuse_too_large(self.server.store, path, length)
            body = self.rfile.read(length)
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        return subscriber.callback(self.command, path, params, headers, body)

    def _hub_request(self) -> tuple[int, dict[str, str], bytes]:
        """A subscriber's request to our hub: a small form."""
        if self.command != "POST":
            return 405, {"Content-Type": "text/plain; charset=utf-8", "Allow": "POST"}, b"POST a hub.mode form\n"
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if not 0 <= length <= HUB_FORM_BYTES:
            self._refuse_body(length)
            return 413, {"Content-Type": "text/plain; charset=utf-8"}, b"send a form of at most 64 KiB\n"
        assert self.server.hub is not None
        return self.server.hub.request(self.rfile.read(length), self.headers.get("Content-Type", ""))

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
        if parts.path.startswith("/websub/"):
            return self._websub(parts.path, parts.query)
        if parts.path == "/hub" and self.server.hub is not None:
            return self._hub_request()
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

        route = route_for(self.server.store, kind, value)
        page = select_page(self.server.store, route, before, limit, self.server.unindexed())
        next_before = page.next_before
        modified = page.modified(self.server.store)
        hub = self.server.hub
        base = hub.public_url if hub is not None else self._base()
        stem = parts.path[: -len(fmt)]  # as requested: already %-quoted

        def url(ext: str, cursor: str | None) -> str:
            params = {k: v for k, v in (("before", cursor), ("limit", str(limit) if limit != DEFAULT_LIMIT else None))
                      if v and v != "+"}
            return base + stem + ext + (f"?{urlencode(params)}" if params else "")

        other = "json" if fmt == "atom" else "atom"
        meta = FeedMeta(title=route.title, self_url=url(fmt, before), alternate_url=url(other, before),
                        home_url=base + "/", feed_id=route.feed_id,
                        next_url=url(fmt, next_before) if next_before else None,
                        hub_url=hub.hub_url if hub is not None else None)
        # Stream entries never change once added, so the selection (its stream ids and its articles'
        # latest versions) and the links fix the body: the ETag is known before reading entries (from the
        # feeds-out index and the version pointers), and a 304 reads none.
        fingerprint = "\n".join([fmt, repr(meta), *(f"{sid} {modified.get(sid, '')}" for sid, _ in page.ids)])
        etag = '"' + hashlib.blake2b(fingerprint.encode(), digest_size=16).hexdigest() + '"'
        headers = {"Content-Type": ATOM_TYPE if fmt == "atom" else JSON_FEED_TYPE, "ETag": etag,
                   "Cache-Control": "no-cache"}
        if hub is not None:  # WebSub discovery: the hub, and the topic (this feed's own address, no query)
            headers["Link"] = f'<{hub.hub_url}>; rel="hub", <{hub.topic_url(parts.path)}>; rel="self"'
        newest = updated([(sid, {}) for sid, _ in page.ids], modified)
        if newest:
            headers["Last-Modified"] = format_datetime(newest.replace(microsecond=0), usegmt=True)
        if self._not_modified(etag, newest):
            return 304, {k: v for k, v in headers.items() if k != "Content-Type"}, b""
        items, modified = page.items(self.server.store)
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
                 admin_token: str | None = None, websub: Subscriber | None = None, hub: Hub | None = None) -> None:
        self.store = store
        self._unindexed = True
        self.websub = websub
        self.hub = hub
        self.admin = admin
        self.admin_token = admin_token
        super().__init__(address, FeedHandler)

    def unindexed(self) -> bool:
        """Whether the stream may still hold articles published before the feeds-out indexes. Once it does not
        (they were trimmed, or there never were any), it never will again: the answer is kept."""
        if self._unindexed:
            since = self.store.out_since()
            self._unindexed = since is None or bool(self.store.read_stream_before(since, count=1))
        return self._unindexed


def make_server(store: Store, host: str, port: int, admin: SourceAdmin | None = None,
                admin_token: str | None = None, websub: Subscriber | None = None, hub: Hub | None = None
                ) -> FeedServer:
    """A bound (not yet serving) feed server; port 0 picks a free one (``.server_port``).

    With ``admin``, it also answers the admin API under /api/ (writes need ``admin_token``).
    """
    return FeedServer(store, (host, port), admin, admin_token, websub, hub)


__all__ = ["FeedServer", "Page", "Route", "make_server", "route_for", "select_page"]
