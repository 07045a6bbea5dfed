"""Which items a feed has listed before (``{p}:seen:{name}``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.store.base import StoreBase, compact

SEEN_WINDOW_SECONDS = 90 * 24 * 3600


class SeenStore(StoreBase):
    def unseen(self, feed: str, guid_keys: Sequence[str]) -> list[bool]:
        """For each hashed GUID, whether this feed has not listed it before."""
        if not guid_keys:
            return []
        scores = self.redis.zmscore(self._key("seen", feed), [compact(key) for key in guid_keys])
        return [score is None for score in scores]

    def mark_seen(self, feed: str, guid_keys: Sequence[str], now: float) -> None:
        """Remember GUIDs the feed lists now; forget those it has not listed for 90 days."""
        pipe = self.redis.pipeline()
        self._queue_seen(pipe, feed, guid_keys, now)
        pipe.execute()

    def _queue_seen(self, pipe: Any, feed: str, guid_keys: Sequence[str], now: float) -> None:
        key = self._key("seen", feed)
        if guid_keys:
            # whole seconds: a listpack stores them as a small integer, not a 17-character float
            pipe.zadd(key, dict.fromkeys((compact(guid) for guid in guid_keys), int(now)))
        pipe.zremrangebyscore(key, "-inf", now - SEEN_WINDOW_SECONDS)
        # a feed no longer polled (removed, retired) takes its GUIDs with it after the window
        pipe.expire(key, SEEN_WINDOW_SECONDS)
