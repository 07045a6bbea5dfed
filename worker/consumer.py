"""Read feedstream's article stream with a Redis consumer group: a client library for downstream apps.

    from worker.consumer import Consumer

    def handle(article: dict) -> None:
        print(article["title"], article["url"])

    Consumer("redis://localhost:6379/0", group="headlines", consumer="host-1").run(handle)

Delivery is at-least-once, the consumer-group way:

- the group is created on first use (``XGROUP CREATE ... MKSTREAM``; an existing group is kept),
  at the end of the stream, or at its start with ``from_start=True``;
- new entries come from ``XREADGROUP ... >``; an entry is acknowledged (``XACK``) only after the
  handler returned, so a consumer that dies between read and ack loses nothing;
- entries left pending by any consumer of the group for longer than ``claim_idle`` seconds are
  taken over with ``XAUTOCLAIM`` and handled again (a restarted consumer with the same name also
  gets its own pending entries back at once);
- an entry whose handler has failed on ``max_deliveries`` deliveries (the count Redis keeps, read
  with ``XPENDING``), or whose ``article`` field is not JSON, is copied to the dead-letter stream
  ``<stream>:dead`` with the error and then acknowledged, so one poison entry cannot block the group.

Handlers should therefore be idempotent (key on ``article["id"]``).

Changed articles come as update events (the same ``id``, ``version`` 2, 3, ..., ``event`` "updated"):
on the stream ``<stream>:updates`` by default, read with a second ``Consumer(..., stream="articles:updates")``,
or on the stream itself when feedstream runs with FEEDSTREAM_UPDATES=inline. Keep the highest
``version`` per id and ignore a lower or equal one (docs/downstream.md, "Updates").

This module is deliberately standalone: it needs only a Redis client or URL, a stream, a group and a
consumer name, not feedstream's settings or feeds file. It is the one place outside ``worker/store.py``
that talks to Redis, because it is a client of the stream (the contract), not part of the service.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

log = logging.getLogger("feedstream.consumer")

Handler = Callable[[dict[str, Any]], object]


def _now_iso() -> str:
    # Not worker.timefmt: this module imports nothing of ours, so a downstream app can copy it alone.
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Delivery:
    """One stream entry as this consumer received it."""

    id: str
    fields: dict[str, str]
    claimed: bool = False  # taken over from the pending list rather than read new


@dataclass
class Outcome:
    """What one round did, for callers that want to watch (``tail``, tests, metrics)."""

    handled: int = 0
    failed: int = 0
    dead: int = 0

    def __iadd__(self, other: Outcome) -> Outcome:
        self.handled += other.handled
        self.failed += other.failed
        self.dead += other.dead
        return self

    @property
    def seen(self) -> int:
        return self.handled + self.failed + self.dead


class Consumer:
    """One named consumer in a consumer group on the article stream."""

    def __init__(self, client: redis.Redis | str, *, stream: str = "articles", group: str, consumer: str,
                 claim_idle: float = 60.0, max_deliveries: int = 5, dead_stream: str | None = None,
                 count: int = 50, block: float = 5.0, from_start: bool = False) -> None:
        """``client``: a redis-py client or a ``redis://`` URL. ``claim_idle``: seconds an entry may sit
        unacknowledged before another consumer takes it over. ``block``: seconds to wait for new entries."""
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self.redis = redis.Redis.from_url(client) if isinstance(client, str) else client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = max(int(claim_idle * 1000), 0)
        self.max_deliveries = max_deliveries
        self.dead_stream = dead_stream or f"{stream}:dead"
        self.count = count
        self.block_ms = max(int(block * 1000), 1)
        self.from_start = from_start
        self._group_ready = False
        self._own_pending_checked = False

    # -- setup ------------------------------------------------------------------------
    def ensure_group(self) -> bool:
        """Create the group (and the stream) unless it exists; True when this call created it."""
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0" if self.from_start else "$", mkstream=True)
            created = True
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            created = False
        self._group_ready = True
        return created

    # -- reading ------------------------------------------------------------------------
    def _decode(self, items: Any, claimed: bool) -> list[Delivery]:
        deliveries = []
        for entry_id, fields in items or []:
            if entry_id is None:
                # Redis < 7 answers XAUTOCLAIM of a deleted entry with a bare nil: find it by its id.
                self._ack_deleted()
                continue
            if not fields:
                # The entry was trimmed from the stream (MAXLEN) while pending: nothing left to handle.
                self.redis.xack(self.stream, self.group, entry_id)
                log.warning("%s: entry %s was trimmed before it was acknowledged", self.stream, _text(entry_id))
                continue
            deliveries.append(Delivery(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()},
                                       claimed))
        return deliveries

    def _ack_deleted(self) -> None:
        """Acknowledge our pending entries that no longer exist in the stream (trimmed or deleted)."""
        rows = self.redis.xpending_range(self.stream, self.group, min="-", max="+", count=1000,
                                         consumername=self.consumer)
        for row in rows:
            entry_id = row["message_id"]
            if not self.redis.xrange(self.stream, min=entry_id, max=entry_id, count=1):
                self.redis.xack(self.stream, self.group, entry_id)
                log.warning("%s: entry %s was trimmed before it was acknowledged", self.stream, _text(entry_id))

    def _own_pending(self) -> list[Delivery]:
        # After a restart under the same name, our own unacknowledged entries come back first.
        reply = self.redis.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=self.count)
        return self._decode(reply[0][1] if reply else [], claimed=True)

    def _claim_idle(self) -> list[Delivery]:
        reply = self.redis.xautoclaim(self.stream, self.group, self.consumer, self.claim_idle_ms,
                                      start_id="0-0", count=self.count)
        return self._decode(reply[1] if reply else [], claimed=True)

    def _read_new(self, block: bool) -> list[Delivery]:
        reply = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=self.count,
                                      block=self.block_ms if block else None)
        return self._decode(reply[0][1] if reply else [], claimed=False)

    def read(self, block: bool = False) -> list[Delivery]:
        """The next entries to handle: our own pending (once), idle ones of others, then new ones."""
        if not self._group_ready:
            self.ensure_group()
        if not self._own_pending_checked:
            self._own_pending_checked = True
            own = self._own_pending()
            if own:
                return own
        claimed = self._claim_idle()
        if claimed:
            return claimed
        return self._read_new(block)

    def deliveries(self, entry_id: str) -> int:
        """How many times Redis has delivered this pending entry (XPENDING); 0 when not pending."""
        rows = self.redis.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
        return int(rows[0]["times_delivered"]) if rows else 0

    # -- handling -----------------------------------------------------------------------
    def ack(self, entry_id: str) -> None:
        self.redis.xack(self.stream, self.group, entry_id)

    def dead_letter(self, delivery: Delivery, error: str, deliveries: int) -> None:
        """Copy the entry to the dead-letter stream with why, and acknowledge it, in one transaction."""
        fields = {**delivery.fields, "source_id": delivery.id, "source_stream": self.stream, "group": self.group,
                  "consumer": self.consumer, "deliveries": str(deliveries), "error": error[:2000],
                  "dead_at": _now_iso()}
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(self.dead_stream, fields)
        pipe.xack(self.stream, self.group, delivery.id)
        pipe.execute()
        log.warning("%s: entry %s moved to %s after %d deliveries: %s", self.group, delivery.id,
                    self.dead_stream, deliveries, error)

    def handle(self, delivery: Delivery, handler: Handler) -> Outcome:
        """Decode, call the handler, ack on success; dead-letter a poison entry."""
        try:
            article = json.loads(delivery.fields["article"])
            if not isinstance(article, dict):
                raise ValueError("not a JSON object")
        except (KeyError, ValueError) as exc:
            # Re-delivering an undecodable entry cannot help: dead-letter it now.
            self.dead_letter(delivery, f"decode: {type(exc).__name__}: {exc}", self.deliveries(delivery.id))
            return Outcome(dead=1)
        if delivery.claimed:
            count = self.deliveries(delivery.id)
            if count > self.max_deliveries:
                # Earlier deliveries never came back (the consumer died in the handler): treat as poison.
                self.dead_letter(delivery, "handler: never completed (consumer died?)", count)
                return Outcome(dead=1)
        try:
            handler(article)
        except Exception as exc:  # any handler failure: leave pending for a retry, or dead-letter
            error = f"handler: {type(exc).__name__}: {exc}"
            count = self.deliveries(delivery.id)
            if count >= self.max_deliveries:
                self.dead_letter(delivery, error, count)
                return Outcome(dead=1)
            log.warning("%s: entry %s failed (delivery %d of %d), will be retried: %s", self.group,
                        delivery.id, count, self.max_deliveries, error)
            return Outcome(failed=1)
        self.ack(delivery.id)
        return Outcome(handled=1)

    def process(self, handler: Handler, block: bool = False) -> Outcome:
        """One round: read a batch and handle each entry."""
        outcome = Outcome()
        for delivery in self.read(block=block):
            outcome += self.handle(delivery, handler)
        return outcome

    def run(self, handler: Handler, *, follow: bool = True, stop: threading.Event | None = None) -> Outcome:
        """Handle entries until ``stop`` is set (``follow``) or until nothing is left to read."""
        total = Outcome()
        while stop is None or not stop.is_set():
            outcome = self.process(handler, block=follow)
            total += outcome
            if not follow and outcome.seen == 0:
                break
            if outcome.seen and outcome.handled == 0 and outcome.dead == 0:
                # Only failures this round: do not spin on the same entries.
                if stop is not None:
                    stop.wait(min(self.claim_idle_ms / 1000, 1.0) or 0.05)
                else:
                    time.sleep(min(self.claim_idle_ms / 1000, 1.0) or 0.05)
        return total
