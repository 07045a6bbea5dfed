"""Our own WebSub hub for the feeds out (``/feed.*``, ``/feeds/<source>.*``, ``/tags/<tag>.*``).

Runs in ``feedstream serve`` when FEEDSTREAM_PUBLIC_URL is set; the feeds advertise it (``Link``
header and ``<link rel="hub">`` / JSON Feed ``hubs``), with the feed's public address as its topic.

- ``POST /hub`` (``hub.mode`` subscribe/unsubscribe, ``hub.topic``, ``hub.callback``, optional
  ``hub.secret`` and ``hub.lease_seconds``): 202, then the intent is verified at the callback
  (``hub.challenge`` echoed) in the background; only then is the subscription stored (Redis), with
  its lease (asked for, within 1 hour .. 30 days; 10 days by default).
- Delivery (:meth:`Hub.run`, one ``serve`` process at a time by a lock in Redis): new stream entries
  (from a cursor kept in Redis) are rendered for each feed they appear in that has subscribers and
  POSTed as that feed's document holding the new articles, signed ``X-Hub-Signature: sha256=...``
  with the subscriber's secret. A failed delivery is tried again with backoff (base, 2x, 4x, ...);
  after MAX_ATTEMPTS the subscriber is dropped and logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from worker.errors import FetchError
from worker.fetch import HttpClient
from worker.out.render import ATOM_TYPE, JSON_FEED_TYPE, FeedMeta, Item, render_atom, render_json_feed
from worker.out.server import _ROUTE, route_for
from worker.sources.spec import check_url
from worker.store import Store

log = logging.getLogger("feedstream.hub")

DEFAULT_LEASE = 10 * 86400
MIN_LEASE, MAX_LEASE = 3600, 30 * 86400
MAX_SECRET_BYTES = 200  # the spec's limit
MAX_ATTEMPTS = 5
MAX_VERIFYING = 8  # verifications in flight at once; beyond: 429
BATCH = 100
LOCK_TTL = 15
Answer = tuple[int, dict[str, str], bytes]


def topic_path(path: str) -> str | None:
    """The canonical path of one of our feeds (``/feed.atom``, ``/feeds/<quoted>.json``...), or None."""
    route = _ROUTE.match(path)
    if not route:
        return None
    kind, value, fmt = route.groups()
    return f"/feed.{fmt}" if kind is None else f"/{kind}/{quote(unquote(value), safe='')}.{fmt}"


def article_topics(doc: dict[str, Any]) -> list[str]:
    """The topic paths of every feed out an article appears in (both formats)."""
    paths = ["/feed.{}"]
    if doc.get("feed"):
        paths.append(f"/feeds/{quote(str(doc['feed']), safe='')}.{{}}")
    paths += [f"/tags/{quote(str(tag), safe='')}.{{}}" for tag in doc.get("tags") or []]
    return [path.format(fmt) for path in paths for fmt in ("atom", "json")]


def _text(status: int, message: str) -> Answer:
    return status, {"Content-Type": "text/plain; charset=utf-8"}, f"{message}\n".encode()


class Hub:
    """Takes subscriptions to our feeds out and delivers new articles to them."""

    def __init__(self, store: Store, http: HttpClient, public_url: str, retry_base: float = 30.0) -> None:
        self.store = store
        self.http = http
        self.public_url = public_url.rstrip("/")
        self.retry_base = retry_base
        self.owner = secrets.token_hex(8)
        self._verifying = threading.BoundedSemaphore(MAX_VERIFYING)

    @property
    def hub_url(self) -> str:
        return f"{self.public_url}/hub"

    def topic_url(self, path: str) -> str:
        return self.public_url + (topic_path(path) or path)

    # -- subscription requests ------------------------------------------------------------------
    def request(self, body: bytes, content_type: str) -> Answer:
        """A subscriber's ``POST /hub``: checked, answered 202, verified in the background."""
        if not content_type.lower().startswith("application/x-www-form-urlencoded"):
            return _text(415, "send an application/x-www-form-urlencoded form")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        mode, topic, callback = form.get("hub.mode"), form.get("hub.topic", ""), form.get("hub.callback", "")
        if mode not in ("subscribe", "unsubscribe"):
            return _text(400, "hub.mode must be subscribe or unsubscribe")
        path = topic_path(urlsplit(topic).path) if topic.startswith(self.public_url + "/") else None
        if path is None or urlsplit(topic).query:
            return _text(400, f"hub.topic must be one of this server's feeds ({self.public_url}/feed.atom, ...)")
        try:
            check_url(callback)
        except ValueError as exc:
            return _text(400, f"hub.callback {exc}")
        secret = form.get("hub.secret", "")
        if len(secret.encode()) > MAX_SECRET_BYTES:
            return _text(400, f"hub.secret must be under {MAX_SECRET_BYTES} bytes")
        try:
            lease = min(max(int(form.get("hub.lease_seconds") or DEFAULT_LEASE), MIN_LEASE), MAX_LEASE)
        except ValueError:
            return _text(400, "hub.lease_seconds must be a number")
        if not self._verifying.acquire(blocking=False):
            return _text(429, "too many verifications in flight; try again shortly")
        threading.Thread(target=self._verify, args=(mode, path, topic, callback, secret, lease),
                         name="hub-verify", daemon=True).start()
        return _text(202, "verifying")

    def _verify(self, mode: str, path: str, topic: str, callback: str, secret: str, lease: int) -> None:
        try:
            challenge = secrets.token_urlsafe(24)
            query = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
            if mode == "subscribe":
                query["hub.lease_seconds"] = str(lease)
            try:
                answer = self.http.get(callback + ("&" if "?" in callback else "?") + urlencode(query))
            except FetchError as exc:
                log.info("hub: %s of %s to %s not verified: %s", mode, callback, topic, exc)
                return
            if answer.body.strip() != challenge.encode():
                log.info("hub: %s of %s to %s not verified: the challenge was not echoed", mode, callback, topic)
                return
            if mode == "unsubscribe":
                self.store.hub_unsubscribe(path, callback)
            elif not self.store.hub_subscribe(path, callback, secret, time.time() + lease):
                log.warning("hub: full: %s refused for %s", callback, topic)
        except Exception:  # a verification's bug must not take the server down
            log.exception("hub: verifying %s", callback)
        finally:
            self._verifying.release()

    # -- delivery -------------------------------------------------------------------------------
    def run(self, stop: threading.Event, every: float = 0.5) -> None:
        """Deliver new articles (and retries) until ``stop`` is set; one ``serve`` process delivers at a time."""
        while not stop.is_set():
            try:
                if self.store.hub_hold(self.owner, LOCK_TTL):
                    self.deliver(time.time())
            except Exception:
                log.exception("hub: delivery")
            stop.wait(every)

    def deliver(self, now: float) -> int:
        """Hand the new stream entries and the due retries to their subscribers; returns deliveries made."""
        cursor = self.store.hub_cursor()
        if cursor is None:  # the first start: what was published before is not news
            self.store.hub_set_cursor(self.store.stream_last_id())
            return 0
        entries = self.store.read_stream(after=cursor, count=BATCH)
        subscriptions = self.store.hub_subscriptions(now) if entries or self.store.hub_retries_waiting(now) else {}
        made = 0
        if entries:
            by_target: dict[tuple[str, str], list[Item]] = defaultdict(list)
            for stream_id, fields in entries:
                doc = _article(fields)
                if doc is None:
                    continue
                for topic in article_topics(doc):
                    for (path, callback) in subscriptions:
                        if path == topic:
                            by_target[(path, callback)].append((stream_id, doc))
            for (path, callback), items in by_target.items():
                made += self._send(path, callback, subscriptions[(path, callback)], items, attempt=1, now=now)
            self.store.hub_set_cursor(entries[-1][0])
        for retry in self.store.hub_retries_due(now):
            key = (retry["topic"], retry["callback"])
            if key not in subscriptions:
                continue  # unsubscribed or dropped meanwhile
            items = [(sid, doc) for sid, fields in self.store.stream_entries(retry["ids"])
                     if (doc := _article(fields)) is not None]
            if items:
                made += self._send(*key, subscriptions[key], items, attempt=int(retry["attempt"]) + 1, now=now)
        return made

    def _send(self, path: str, callback: str, subscription: dict[str, Any], items: list[Item], attempt: int,
              now: float) -> int:
        body, content_type = self._render(path, items)
        headers = {}
        if subscription.get("secret"):
            digest = hmac.new(str(subscription["secret"]).encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = f"sha256={digest}"
        headers["Link"] = f'<{self.hub_url}>; rel="hub", <{self.public_url}{path}>; rel="self"'
        try:
            self.http.post(callback, body, content_type, headers)
            return 1
        except FetchError as exc:
            if attempt >= MAX_ATTEMPTS:
                self.store.hub_unsubscribe(path, callback)
                log.warning("hub: dropped %s from %s after %d failed deliveries (last: %s)", callback, path,
                            attempt, exc)
                return 0
            delay = self.retry_base * 2 ** (attempt - 1)
            self.store.hub_retry_later({"topic": path, "callback": callback, "ids": [sid for sid, _ in items],
                                        "attempt": attempt}, now + delay)
            log.info("hub: delivery to %s failed (attempt %d; again in %.0f s): %s", callback, attempt, delay, exc)
            return 0

    def _render(self, path: str, items: Iterable[Item]) -> tuple[bytes, str]:
        route = _ROUTE.match(path)
        assert route is not None
        kind, value, fmt = route.groups()
        target = route_for(self.store, kind, unquote(value or ""))
        other = "json" if fmt == "atom" else "atom"
        meta = FeedMeta(title=target.title, self_url=self.public_url + path,
                        alternate_url=self.public_url + path[: -len(fmt)] + other,
                        home_url=self.public_url + "/", feed_id=target.feed_id, hub_url=self.hub_url)
        ordered = sorted(items, key=lambda item: _order(item[0]), reverse=True)  # newest first, as served
        if fmt == "atom":
            return render_atom(meta, ordered), ATOM_TYPE
        return render_json_feed(meta, ordered), JSON_FEED_TYPE


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _article(fields: dict[str, str]) -> dict[str, Any] | None:
    try:
        doc = json.loads(fields.get("article", "{}"))
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and doc.get("event") != "updated" else None
