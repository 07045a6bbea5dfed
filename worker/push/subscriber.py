"""Our WebSub subscriptions, run by ``feedstream serve`` (which serves their callbacks).

:class:`Subscriber` does two things:

- the **manager** (:meth:`Subscriber.run`, a thread of ``serve`` when FEEDSTREAM_PUBLIC_URL is
  set): looks at each source's subscription when it is due (``{p}:websub:due``, claimed atomically,
  so several ``serve`` processes share the work) and subscribes, renews (at 3/4 of the lease),
  unsubscribes (the source removed or paused) or waits, as :func:`worker.push.websub.decide` says.
  Requests to hubs go out through the guarded HTTP client (SSRF guard, deadline, size cap).
- the **callback** (:meth:`Subscriber.callback`, under ``/websub/<source>/<token>``): answers the
  hub's verification only for what we asked, and queues a content distribution whose signature
  checks (``worker.jobs.ingest_push``, the poll queue) to be taken as a poll that did not fetch.

Every subscription gets its own random token (in the callback's path) and secret (for the HMAC).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import quote, unquote, urlencode

from rq import Queue

from worker.errors import FetchError
from worker.fetch import HttpClient
from worker.models import Feed, Sitemap
from worker.pipeline.queues import POLL_QUEUE, enqueue_push
from worker.push.websub import (
    DEFAULT_LEASE,
    DENIED_RETRY,
    MAX_PUSH_BYTES,
    STRENGTH,
    VERIFY_TIMEOUT,
    Action,
    Subscription,
    answer_verification,
    backoff,
    check_signature,
    decide,
    tokens_match,
)
from worker.settings import Settings
from worker.sources.live import LiveSources
from worker.sources.plan import Snapshot
from worker.store import Store

log = logging.getLogger("feedstream.websub")

TICK = 0.5
FORM = "application/x-www-form-urlencoded"
Answer = tuple[int, dict[str, str], bytes]


class Subscriber:
    """The subscription manager and the callback's handler (see the module's docstring)."""

    def __init__(self, store: Store, http: HttpClient, public_url: str | None, push_queue: Queue,
                 lease: int = DEFAULT_LEASE) -> None:
        self.store = store
        self.http = http
        self.public_url = public_url.rstrip("/") if public_url else None
        self.push_queue = push_queue
        self.lease = lease
        self.sources = LiveSources(store, on_change=self._sources_changed)

    # -- the manager --------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Look at due subscriptions every TICK seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.sources.refresh()
                self.tick(time.time())
            except Exception:  # Redis away, a bug: the manager must outlive it (callbacks are served meanwhile)
                log.exception("websub: manager tick")
            stop.wait(TICK)

    def tick(self, now: float) -> list[str]:
        """Look at every subscription due by ``now``; returns their sources' names."""
        names = self.store.websub_claim_due(now, VERIFY_TIMEOUT)
        for name in names:
            self.look(name, now)
        return names

    def _sources_changed(self, snapshot: Snapshot) -> None:
        # a source removed, paused or resumed: look at every subscription now (there are few)
        self.store.websub_look_at(dict.fromkeys(self.store.websub_names(), time.time()))

    def look(self, name: str, now: float) -> Action:
        """Decide and do the next step for one source's subscription."""
        sub = self.store.websub_subscription(name) or Subscription(name)
        record = self.sources.record(name)
        active = (record is not None and not record.paused and isinstance(record.source, Feed)
                  and not isinstance(record.source, Sitemap))
        action = decide(sub, active=active, exists=record is not None, can_subscribe=self.public_url is not None,
                        now=now)
        if action.kind == "forget":
            self.store.websub_forget(name)
        elif action.kind == "wait":
            self.store.websub_save(action.subscription, action.due)
        elif action.kind == "subscribe":
            self._subscribe(action, now)
        else:
            self._unsubscribe(action.subscription, now, exists=record is not None)
        return action

    def callback_url(self, sub: Subscription) -> str:
        return f"{self.public_url}/websub/{quote(sub.name, safe='')}/{sub.token}"

    def _subscribe(self, action: Action, now: float) -> None:
        sub = action.subscription
        if action.fresh:
            sub = replace(sub, hub=sub.found_hub, topic=sub.found_topic, token=secrets.token_urlsafe(24),
                          secret=secrets.token_hex(32), pushes=0, algorithm="")
        live = sub.live(now)
        sub = replace(sub, asked="subscribe", requested_at=now, state="live" if live else "requested")
        # written before asking: a hub may verify before it answers our request
        self.store.websub_save(sub, now + VERIFY_TIMEOUT)
        try:
            self._post(sub, "subscribe")
        except FetchError as exc:
            failed = replace(sub, asked="", errors=sub.errors + 1, state="live" if live else "failed",
                             last_error=f"websub: subscribing at {sub.hub}: {exc}")
            self.store.websub_save(failed, now + backoff(failed.errors))
            log.warning("%s: %s", sub.name, failed.last_error)
            return
        log.info("%s: asked %s for a subscription to %s", sub.name, sub.hub, sub.topic)

    def _unsubscribe(self, sub: Subscription, now: float, exists: bool) -> None:
        asking = replace(sub, asked="unsubscribe", state="unsubscribing", requested_at=now)
        self.store.websub_save(asking, now + VERIFY_TIMEOUT)
        try:
            self._post(asking, "unsubscribe")
        except FetchError as exc:
            # the hub will not hear it: its lease runs out, and pushes meanwhile find no token of ours
            log.warning("%s: unsubscribing at %s: %s (the lease will lapse)", sub.name, sub.hub, exc)
            if not exists:
                self.store.websub_forget(sub.name)
                return
            self.store.websub_save(replace(asking, asked="", state="unsubscribed", token="", secret="",
                                           last_error=f"websub: unsubscribing at {sub.hub}: {exc}"), None)

    def _post(self, sub: Subscription, mode: str) -> None:
        form = {"hub.mode": mode, "hub.topic": sub.topic, "hub.callback": self.callback_url(sub)}
        if mode == "subscribe":
            form.update({"hub.secret": sub.secret, "hub.lease_seconds": str(self.lease)})
        self.http.post(sub.hub, urlencode(form).encode(), FORM)

    # -- the callback ---------------------------------------------------------------------------
    def callback(self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
                 body: bytes) -> Answer:
        """Answer a request under ``/websub/<source>/<token>``: the hub's verification (GET) or a push (POST)."""
        parts = path.split("/")
        if len(parts) != 4 or not parts[2] or not parts[3]:
            return _text(404, "no such callback")
        name, token = unquote(parts[2]), parts[3]
        now = time.time()
        sub = self.store.websub_subscription(name)
        if method in ("GET", "HEAD"):
            status, answer, changed = answer_verification(sub, token, query, now)
            if changed is not None:
                due = {"live": changed.renew_at, "denied": now + DENIED_RETRY}.get(changed.state, now)
                self.store.websub_save(changed, due)
                log.info("%s: %s verified by %s", name, query.get("hub.mode"), changed.hub)
            return status, {"Content-Type": "text/plain; charset=utf-8"}, answer
        if method != "POST":
            return _text(405, "GET (verification) or POST (content)")
        if sub is None or not tokens_match(sub, token) or sub.state not in ("live", "requested"):
            if sub is not None:
                self.store.websub_pushed(name, now, refused="websub: push refused: unknown callback token")
            return _text(404, "no such subscription")
        good, why = check_signature(headers.get("x-hub-signature"), body, sub.secret, sub.algorithm)
        if not good:
            self.store.websub_pushed(name, now, refused=f"websub: push refused: {why}")
            log.warning("%s: push refused: %s", name, why)
            return _text(202, "ignored")  # the spec: 2xx, and the message locally ignored
        if STRENGTH[why] > STRENGTH.get(sub.algorithm, 0):
            self.store.websub_seen_algorithm(name, why)
        enqueue_push(self.push_queue, name, body, headers.get("content-type", ""))
        return _text(202, "accepted")


def refuse_too_large(store: Store, path: str, length: int) -> Answer:
    """A push whose body is over MAX_PUSH_BYTES: 413, noted on the source named in the path."""
    parts = path.split("/")
    if len(parts) == 4 and store.websub_subscription(unquote(parts[2])) is not None:
        store.websub_pushed(unquote(parts[2]), time.time(),
                            refused=f"websub: push refused: {length:,} bytes, over {MAX_PUSH_BYTES:,}")
    return _text(413, f"a push is at most {MAX_PUSH_BYTES:,} bytes")


def _text(status: int, message: str) -> Answer:
    return status, {"Content-Type": "text/plain; charset=utf-8"}, f"{message}\n".encode()


def open_subscriber(store: Store, settings: Settings, http: HttpClient) -> Subscriber:
    """The subscriber of a ``serve`` process: it subscribes only with FEEDSTREAM_PUBLIC_URL set; without
    it, it still unsubscribes what was subscribed before and answers those hubs."""
    return Subscriber(store, http, settings.public_url, Queue(POLL_QUEUE, connection=store.redis),
                      lease=settings.websub_lease)
