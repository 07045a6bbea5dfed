"""Our own WebSub hub's state (worker/out/hub.py): who subscribes to which feed out, and deliveries.

Keys (new; under the ``prefix`` namespace):

- ``{p}:hub:subs``    hash, "<topic path>\\n<callback>" -> JSON {secret, expires, failures}; at most
  MAX_SUBSCRIPTIONS fields (a lapsed lease is dropped when deliveries read it)
- ``{p}:hub:cursor``  string, the stream id up to which new articles were handed to subscribers
- ``{p}:hub:lock``    string, the ``serve`` process delivering (SET NX with a TTL: one at a time)
- ``{p}:hub:retry``   zset, a failed delivery (JSON: topic, callback, stream ids, attempt) -> when to try again
"""

from __future__ import annotations

import json
from typing import Any

from worker.store.base import StoreBase, text

MAX_SUBSCRIPTIONS = 10_000


class HubStore(StoreBase):
    def _hub(self, part: str) -> str:
        return self._key("hub", part)

    def hub_subscribe(self, topic: str, callback: str, secret: str, expires: float) -> bool:
        """Add or renew a verified subscription; False when the hub is full (a new one is refused)."""
        field = f"{topic}\n{callback}"
        key = self._hub("subs")
        if not self.redis.hexists(key, field) and self.redis.hlen(key) >= MAX_SUBSCRIPTIONS:
            return False
        self.redis.hset(key, field, json.dumps({"secret": secret, "expires": expires, "failures": 0}))
        return True

    def hub_unsubscribe(self, topic: str, callback: str) -> None:
        self.redis.hdel(self._hub("subs"), f"{topic}\n{callback}")

    def hub_subscriptions(self, now: float) -> dict[tuple[str, str], dict[str, Any]]:
        """Every live subscription by (topic path, callback); lapsed leases are dropped here."""
        live: dict[tuple[str, str], dict[str, Any]] = {}
        lapsed = []
        for raw_field, raw in self.redis.hgetall(self._hub("subs")).items():
            field = text(raw_field)
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"expires": 0}
            if float(doc.get("expires", 0)) <= now:
                lapsed.append(field)
                continue
            topic, _, callback = field.partition("\n")
            live[(topic, callback)] = doc
        if lapsed:
            self.redis.hdel(self._hub("subs"), *lapsed)
        return live

    def hub_cursor(self) -> str | None:
        value = self.redis.get(self._hub("cursor"))
        return text(value) if value is not None else None

    def hub_set_cursor(self, stream_id: str) -> None:
        self.redis.set(self._hub("cursor"), stream_id)

    def hub_hold(self, owner: str, ttl: int) -> bool:
        """Take or keep the delivering role for ``ttl`` seconds; False when another process holds it."""
        key = self._hub("lock")
        if self.redis.set(key, owner, nx=True, ex=ttl):
            return True
        held = self.redis.get(key)
        if held is not None and text(held) == owner:
            self.redis.expire(key, ttl)
            return True
        return False

    def hub_retry_later(self, item: dict[str, Any], at: float) -> None:
        self.redis.zadd(self._hub("retry"), {json.dumps(item, sort_keys=True): at})

    def hub_retries_waiting(self, now: float) -> bool:
        return bool(self.redis.zcount(self._hub("retry"), "-inf", now))

    def hub_retries_due(self, now: float, limit: int = 100) -> list[dict[str, Any]]:
        """Failed deliveries due again (taken off the set)."""
        key = self._hub("retry")
        due = self.redis.zrangebyscore(key, "-inf", now, start=0, num=limit)
        if due:
            self.redis.zrem(key, *due)
        return [json.loads(item) for item in due]

    def stream_entries(self, ids: list[str]) -> list[tuple[str, dict[str, str]]]:
        """The stream entries with these ids (those still on the stream), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for stream_id in ids:
            pipe.xrange(self.stream, min=stream_id, max=stream_id, count=1)
        found = []
        for reply in pipe.execute() if ids else []:
            for entry_id, fields in reply:
                found.append((text(entry_id), {text(k): text(v) for k, v in fields.items()}))
        return found

    def stream_last_id(self) -> str:
        newest = self.publishing.xrevrange(self.stream, count=1)
        return text(newest[0][0]) if newest else "0-0"
