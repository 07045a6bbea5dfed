"""A process's view of the sources in Redis, kept current without a restart.

Every long-running process (scheduler, workers, serve, smtp, metrics) holds one
:class:`LiveSources`. It compares the sources' version counter with the one it read, at most
once per ``check_every`` seconds (one GET), and reads every record again when it moved; a name
it does not know is looked up again at once (a source added a moment ago is found by the first
job that names it). So a change reaches every process within about a second, without pub/sub:
a counter cannot be missed across a reconnect or a restart of Redis, and costs nothing when
nothing changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from worker.models import Feed, NewsletterSource
from worker.sources.plan import Snapshot, SourceRecord
from worker.store import Store

CHECK_EVERY = 1.0


class LiveSources:
    """The sources as last read from Redis; :meth:`refresh` catches up when they changed."""

    def __init__(self, store: Store, check_every: float = CHECK_EVERY,
                 on_change: Callable[[Snapshot], None] | None = None) -> None:
        self.store = store
        self.check_every = check_every
        self.on_change = on_change
        self._lock = threading.Lock()
        self._snapshot = Snapshot(-1, {})
        self._checked = float("-inf")

    def refresh(self, force: bool = False) -> bool:
        """Read the sources again if their version moved (checked at most every ``check_every`` s
        unless ``force``); returns whether they changed. A Redis error keeps the copy held."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._checked < self.check_every:
                return False
            self._checked = now
            try:
                if self.store.sources_version() == self._snapshot.version:
                    return False
                snapshot = self.store.sources_snapshot()
            except redis.RedisError:
                if self._snapshot.version < 0:
                    raise
                return False
            self._snapshot = snapshot
        if self.on_change:
            self.on_change(snapshot)
        return True

    @property
    def records(self) -> Mapping[str, SourceRecord]:
        self.refresh()
        return self._snapshot.records

    @property
    def defaults(self) -> Mapping[str, Any]:
        """The feeds file's ``[defaults]`` rules (issue 16), as Redis holds them."""
        self.refresh()
        return self._snapshot.defaults

    def record(self, name: str) -> SourceRecord | None:
        """The source named ``name``; an unknown or paused one makes the view check Redis again at once
        (a job must not skip a source added or resumed a moment ago)."""
        self.refresh()
        record = self._snapshot.records.get(name)
        if (record is None or record.paused) and self.refresh(force=True):
            record = self._snapshot.records.get(name)
        return record

    def feed(self, name: str) -> Feed | None:
        record = self.record(name)
        return record.source if record is not None and isinstance(record.source, Feed) else None

    def newsletter(self, name: str) -> NewsletterSource | None:
        record = self.record(name)
        return record.source if record is not None and isinstance(record.source, NewsletterSource) else None

    def feeds(self) -> dict[str, Feed]:
        return {n: r.source for n, r in self.records.items() if isinstance(r.source, Feed)}

    def newsletters(self) -> dict[str, NewsletterSource]:
        return {n: r.source for n, r in self.records.items() if isinstance(r.source, NewsletterSource)}

    def paused(self, name: str) -> bool:
        record = self._snapshot.records.get(name)
        return bool(record and record.paused)
