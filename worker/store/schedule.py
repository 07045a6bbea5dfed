"""The due set (``{p}:due``) and the per-feed poll locks (``{p}:polling:{name}``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from worker.store.base import StoreBase, text


class ScheduleStore(StoreBase):
    def sync_feeds(self, names: Sequence[str], now: float) -> None:
        """Make the due set hold exactly ``names``: new feeds are due now, removed ones go."""
        current = {text(n) for n in self.redis.zrange(self.due_key, 0, -1)}
        pipe = self.redis.pipeline()
        if names:
            pipe.zadd(self.due_key, dict.fromkeys(names, now), nx=True)
        stale = current - set(names)
        if stale:
            pipe.zrem(self.due_key, *stale)
        pipe.execute()

    def revive(self, urls: Mapping[str, str], now: float) -> list[str]:
        """Make retired feeds whose configured URL changed since they were retired due now."""
        retired = [text(n) for n in self.redis.zrangebyscore(self.due_key, "+inf", "+inf")]
        revived = []
        for name in retired:
            gone_url = self.redis.hget(self.feed_key(name), "retired_url")
            if name in urls and (gone_url is None or text(gone_url) != urls[name]):
                self.redis.zadd(self.due_key, {name: now}, xx=True)
                revived.append(name)
        return revived

    def claim_due(self, now: float, lease: float, limit: int = 1000) -> list[str]:
        """Feeds due by ``now``; each one's slot moves ``lease`` seconds on, atomically."""
        names = self._script("claim_due")(keys=[self.due_key], args=[now, lease, limit])
        return [text(n) for n in names]

    def schedule(self, name: str, at: float) -> None:
        """Set the feed's next poll (only for feeds still configured, i.e. in the due set)."""
        self.redis.zadd(self.due_key, {name: at}, xx=True)

    def next_due(self) -> float | None:
        first = self.redis.zrange(self.due_key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def due_times(self) -> dict[str, float]:
        return {text(n): float(s) for n, s in self.redis.zrange(self.due_key, 0, -1, withscores=True)}

    def acquire_polls(self, names: Sequence[str], ttl: int) -> list[str]:
        """The feeds among ``names`` that no other poll holds; each is held for ``ttl`` s or until released."""
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.set(self._key("polling", name), "1", nx=True, ex=ttl)
        return [name for name, won in zip(names, pipe.execute(), strict=True) if won]

    def release_polls(self, names: Sequence[str]) -> None:
        if names:
            self.redis.delete(*(self._key("polling", name) for name in names))
