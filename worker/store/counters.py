"""Operational figures: ``{p}:counters``, ``{p}:http``, ``{p}:delay`` (a histogram), ``{p}:heartbeats``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from worker.store.base import StoreBase, text
from worker.store.refusals import refusal_kind

# Upper bounds (seconds) of the publish-delay histogram: a minute to a week.
DELAY_BUCKETS: tuple[float, ...] = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
                                    2 * 86400, 7 * 86400)


class CountersStore(StoreBase):
    def count(self, counts: Mapping[str, int], *, http: Mapping[tuple[str, int | str], int] | None = None,
              delays: Iterable[float] = ()) -> None:
        """Add to the counters, and optionally to the HTTP status counts and the publish-delay
        histogram, in one round trip (an extract job reports its whole batch at once)."""
        pipe = self.redis.pipeline()
        self._queue_counts(pipe, counts, http=http, delays=delays)
        pipe.execute()

    def _queue_counts(self, pipe: Any, counts: Mapping[str, int], *,
                      http: Mapping[tuple[str, int | str], int] | None = None,
                      delays: Iterable[float] = ()) -> None:
        for name, amount in counts.items():
            if amount:
                pipe.hincrby(self.counters_key, name, amount)
        for (kind, status), amount in (http or {}).items():
            pipe.hincrby(self._key("http"), f"{kind}:{status}", amount)
        for seconds in delays:
            self._queue_delay(pipe, seconds)

    def counters(self) -> dict[str, int]:
        """The event counts; with a publishing Redis of its own, its counts (published, duplicates) added."""
        counts = {text(k): int(v) for k, v in self.redis.hgetall(self.counters_key).items()}
        if self.split:
            for key, value in self.publishing.hgetall(self.counters_key).items():
                counts[text(key)] = counts.get(text(key), 0) + int(value)
        return counts

    def count_http(self, kind: str, status: int | str) -> None:
        """One HTTP response (or ``error`` when none came) for a ``feed`` or ``page`` fetch."""
        self.redis.hincrby(self._key("http"), f"{kind}:{status}", 1)

    def http_counts(self) -> dict[tuple[str, str], int]:
        counts = {}
        for field, value in self.redis.hgetall(self._key("http")).items():
            kind, _, status = text(field).partition(":")
            counts[(kind, status)] = int(value)
        return counts

    def observe_delay(self, seconds: float) -> None:
        """Add one article's delay from its ``published`` time to its XADD to the histogram.

        Buckets are stored non-cumulative (one HINCRBY each); the reader sums them up.
        """
        pipe = self.redis.pipeline(transaction=True)
        self._queue_delay(pipe, seconds)
        pipe.execute()

    def _queue_delay(self, pipe: Any, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        bucket = next((f"{b:g}" for b in DELAY_BUCKETS if seconds <= b), "+Inf")
        key = self._key("delay")
        pipe.hincrby(key, bucket, 1)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "sum", seconds)

    def delay_histogram(self) -> tuple[list[tuple[str, int]], float]:
        """(cumulative ``(le, count)`` pairs ending with ``+Inf``, sum of seconds)."""
        raw = {text(k): text(v) for k, v in self.redis.hgetall(self._key("delay")).items()}
        running, buckets = 0, []
        for bound in [f"{b:g}" for b in DELAY_BUCKETS] + ["+Inf"]:
            running += int(raw.get(bound, 0))
            buckets.append((bound, running))
        return buckets, float(raw.get("sum", 0.0))

    def beat(self, process: str, now: float) -> None:
        """Record that a process (e.g. the scheduler) is alive, for health checks."""
        self.redis.hset(self._key("heartbeats"), process, now)

    def last_beat(self, process: str) -> float | None:
        value = self.redis.hget(self._key("heartbeats"), process)
        return float(value) if value else None

    def probe_write(self) -> str | None:
        """None when Redis accepts a write now, else what kind of refusal it answers with (OOM, READONLY, ...).

        Live: nothing can record a refusal while it lasts, so health checks ask with a tiny write of their own.
        """
        for client in (self.redis, self.publishing) if self.split else (self.redis,):
            try:
                client.set(self._key("probe"), "1", ex=60)
            except redis.RedisError as exc:
                return refusal_kind(exc) or f"error: {exc}"
        return None

    def memory(self) -> dict[str, int | str]:
        """Redis's memory use against its limit (INFO memory): used_memory, maxmemory, maxmemory_policy."""
        info = self.redis.info("memory")
        return {k: info.get(k, 0) for k in ("used_memory", "maxmemory", "maxmemory_policy")}

    def ping(self) -> float:
        """Round-trip time to Redis in seconds; raises redis.ConnectionError when unreachable."""
        start = time.monotonic()
        self.redis.ping()
        if self.split:
            self.publishing.ping()
        return time.monotonic() - start
