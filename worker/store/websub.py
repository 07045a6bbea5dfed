"""WebSub subscriptions (worker/push/): each source's subscription, the manager's schedule.

Keys (new; under the ``prefix`` namespace):

- ``{p}:websub:{name}``  hash, the source's subscription (worker.push.websub.Subscription's fields), with a
  TTL: the lease plus a month, renewed by every write (a source's polls note its hub on each poll)
- ``{p}:websub:names``   set, the sources that have such a hash (as many as there are sources at most)
- ``{p}:websub:due``     zset, source name -> when the manager looks at its subscription next
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from worker.push.websub import DEFAULT_LEASE, Subscription
from worker.store.base import StoreBase, text

KEEP_SECONDS = 30 * 86400


class WebSubStore(StoreBase):
    def _websub_key(self, name: str) -> str:
        return self._key("websub", name)

    @property
    def websub_due_key(self) -> str:
        return self._key("websub", "due")

    @property
    def websub_names_key(self) -> str:
        return self._key("websub", "names")

    def websub_subscription(self, name: str) -> Subscription | None:
        raw = self.redis.hgetall(self._websub_key(name))
        return Subscription.from_hash(name, {text(k): text(v) for k, v in raw.items()}) if raw else None

    def websub_subscriptions(self, names: Iterable[str]) -> dict[str, Subscription]:
        """The subscriptions of ``names`` that exist, in one round trip."""
        names = list(names)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self._websub_key(name))
        return {name: Subscription.from_hash(name, {text(k): text(v) for k, v in raw.items()})
                for name, raw in zip(names, pipe.execute() if names else [], strict=True) if raw}

    def websub_save(self, sub: Subscription, due: float | None, fields: Iterable[str] | None = None) -> None:
        """Write the subscription (only ``fields`` of it, if given) and its next look (None: none)."""
        key = self._websub_key(sub.name)
        values = sub.to_hash()
        if fields is not None:
            values = {k: values[k] for k in fields}
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping=values)
        pipe.expire(key, int(KEEP_SECONDS + max(sub.lease, 0)))
        pipe.sadd(self.websub_names_key, sub.name)
        if due is None:
            pipe.zrem(self.websub_due_key, sub.name)
        else:
            pipe.zadd(self.websub_due_key, {sub.name: due})
        pipe.execute()

    def websub_forget(self, name: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._websub_key(name))
        pipe.srem(self.websub_names_key, name)
        pipe.zrem(self.websub_due_key, name)
        pipe.execute()

    def websub_note_hub(self, name: str, hub: str, topic: str, now: float) -> bool:
        """Record the hub and topic a poll of the source found; a change makes the manager look now."""
        key = self._websub_key(name)
        found = [text(v) if v is not None else "" for v in self.redis.hmget(key, "found_hub", "found_topic")]
        if found == [hub, topic]:
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"found_hub": hub, "found_topic": topic})
        pipe.expire(key, KEEP_SECONDS + DEFAULT_LEASE)
        pipe.sadd(self.websub_names_key, name)
        pipe.zadd(self.websub_due_key, {name: now})
        pipe.execute()
        return True

    def websub_live(self, name: str, now: float) -> bool:
        """Whether the source has a verified subscription whose lease has not ended (one HMGET)."""
        state, verified, lease = self.redis.hmget(self._websub_key(name), "state", "verified_at", "lease")
        return (state is not None and text(state) == "live"
                and now < float(text(verified or b"0")) + float(text(lease or b"0")))

    def websub_names(self) -> list[str]:
        return sorted(text(n) for n in self.redis.smembers(self.websub_names_key))

    def websub_look_at(self, names: Mapping[str, float]) -> None:
        """Make the manager look at these sources' subscriptions at the given times."""
        if names:
            self.redis.zadd(self.websub_due_key, dict(names))

    def websub_claim_due(self, now: float, lease: float, limit: int = 100) -> list[str]:
        """Sources whose subscription is due a look; each one's slot moves ``lease`` on, atomically."""
        names = self._script("claim_due")(keys=[self.websub_due_key], args=[now, lease, limit])
        return [text(n) for n in names]

    def websub_pushed(self, name: str, now: float, refused: str | None = None) -> None:
        """Count a push taken (or refused, and why) on the source's subscription."""
        key = self._websub_key(name)
        pipe = self.redis.pipeline(transaction=True)
        if refused is None:
            pipe.hset(key, "last_push", str(now))
            pipe.hincrby(key, "pushes", 1)
        else:
            pipe.hset(key, "last_refused", refused[:300])
            pipe.hincrby(key, "refused", 1)
        pipe.execute()

    def websub_seen_algorithm(self, name: str, algorithm: str) -> None:
        self.redis.hset(self._websub_key(name), "algorithm", algorithm)
