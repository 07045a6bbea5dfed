"""A source's status hash (``{p}:feed:{name}``): what its polls found, read by ``feedstream status``.

A poll's whole outcome (status fields, error count, next slot, counters, seen items, and the
new entries recorded as pending in the outbox) is written by :meth:`FeedStore.apply_poll` in one MULTI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from worker.models import PollIntent
from worker.store.base import text
from worker.store.filtered import FilteredStore
from worker.store.outbox import OutboxStore
from worker.store.seen import SeenStore


class FeedStore(SeenStore, FilteredStore, OutboxStore):
    def feed_status(self, name: str) -> dict[str, str]:
        raw = self.redis.hgetall(self.feed_key(name))
        return {text(k): text(v) for k, v in raw.items()}

    def apply_poll(self, intent: PollIntent, pending: Mapping[str, Sequence[tuple[str, dict[str, Any]]]] | None = None,
                   check_at: float = 0.0) -> None:
        """Write what a poll (or a received mail) decided, in one atomic step (MULTI).

        ``pending`` (``{job id: [(token, entry dict), ...]}``) are the new entries about to be queued:
        they are recorded in the outbox in the same step as their GUIDs are marked seen, first checked
        by the sweeper at ``check_at``. A poll of an unchanged feed is a handful of Redis writes; sent
        one by one they cost more than the conditional GET itself.
        """
        key = self.feed_key(intent.source)
        pipe = self.redis.pipeline(transaction=True)
        if intent.fields:
            pipe.hset(key, mapping={k: str(v) for k, v in intent.fields.items()})
        if intent.error is True:
            pipe.hincrby(key, "consecutive_errors", 1)
        elif intent.error is False:
            pipe.hset(key, "consecutive_errors", 0)
            pipe.hdel(key, "last_error")
        if intent.clear:
            pipe.hdel(key, *intent.clear)
        if intent.error is not None:
            pipe.hincrby(key, "polls", 1)
        for field, amount in intent.source_counts.items():
            if amount:
                pipe.hincrby(key, field, amount)
        if intent.next_poll is not None:
            pipe.zadd(self.due_key, {intent.source: intent.next_poll}, xx=True)
        self._queue_counts(pipe, intent.counters, http={intent.http: 1} if intent.http else None)
        if intent.filtered:
            self._queue_filtered(pipe, intent.source, intent.filtered)
        if intent.seen_at is not None:
            self._queue_seen(pipe, intent.source, intent.seen, intent.seen_at)
        if intent.marks is not None:
            self._queue_marks(pipe, intent.source, intent.marks)
        if pending:
            self._queue_pending(pipe, pending, check_at)
        pipe.execute()
