"""Which items a feed has listed before (``{p}:seen:{name}``), and how each looked when it last changed
(``{p}:marks:{name}``: hashed GUID -> the entry's 12-byte mark, see dedupe/changes.py)."""

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

    def entry_marks(self, feed: str) -> dict[str, bytes]:
        """The marks of the entries the feed listed when its listing last changed, by hashed GUID."""
        raw = self.redis.hgetall(self._key("marks", feed))
        return {key.hex(): mark for key, mark in raw.items()}

    def _queue_marks(self, pipe: Any, feed: str, marks: Sequence[tuple[str, bytes]]) -> None:
        """Replace the feed's marks with ``marks`` (so they hold only what it lists now), kept for the update
        window: an entry changing later than that belongs to an article too old to re-check."""
        key = self._key("marks", feed)
        pipe.delete(key)
        if marks:
            pipe.hset(key, mapping={compact(guid): mark for guid, mark in marks})
            pipe.expire(key, self.updates.window)
