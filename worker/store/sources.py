"""Sources as the running truth (issue 15): every process reads them here, every change is one step.

Keys (new; under the ``prefix`` namespace):

- ``{p}:sources``          hash, source name -> :class:`~worker.sources.plan.SourceRecord` JSON
- ``{p}:sources:version``  string, a counter raised by every change: a process holding a copy of the
  sources compares it (one GET, at most once a second) and reads them again when it moved
- ``{p}:sources:defaults`` string, JSON: the feeds file's ``[defaults]`` rules (issue 16); absent: none

A change is decided by a pure function from a consistent snapshot and written in one MULTI under
WATCH of the version (optimistic: a concurrent change makes the EXEC fail and the decision is made
again from the new snapshot), so two admins adding sources at once never lose one, and a refused
change writes nothing. The poll schedule (``{p}:due``) is changed in the same step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from worker.errors import SourceError
from worker.sources.plan import Snapshot, SourceChange, SourceRecord, active_polled
from worker.store.base import StoreBase, text

T = TypeVar("T")
log = logging.getLogger("feedstream.sources")

# A removed source's seen items and mailbox position outlive it this long, so adding it back soon
# does not queue everything its feed lists again (claims would stop doubles, not the fetches).
FORGET_AFTER_SECONDS = 90 * 24 * 3600
CHANGE_ATTEMPTS = 20


class SourceStore(StoreBase):
    """The sources hash, its version, and their poll slots."""

    @property
    def sources_key(self) -> str:
        return self._key("sources")

    @property
    def sources_version_key(self) -> str:
        return self._key("sources", "version")

    @property
    def sources_defaults_key(self) -> str:
        return self._key("sources", "defaults")

    def sources_version(self) -> int:
        """The sources' change counter (0 before the first source)."""
        return int(self.redis.get(self.sources_version_key) or 0)

    def sources_snapshot(self) -> Snapshot:
        """Version, every record and the poll schedule, as of one version.

        Not a MULTI: Redis refuses MULTI while it refuses writes (OOM), and status and health checks
        must read then. The version is read before and after instead; every change raises it in the
        same MULTI that writes the records, so equal versions mean the reads saw one state.
        """
        for _ in range(CHANGE_ATTEMPTS):
            pipe = self.redis.pipeline(transaction=False)
            self._queue_snapshot_reads(pipe)
            pipe.get(self.sources_version_key)
            *reads, version_after = pipe.execute()
            if reads[0] == version_after:
                break
        return _snapshot(*reads)

    def _queue_snapshot_reads(self, pipe: Any) -> None:
        pipe.get(self.sources_version_key)
        pipe.hgetall(self.sources_key)
        pipe.zrange(self.due_key, 0, -1, withscores=True)
        pipe.get(self.sources_defaults_key)

    def change_sources(self, decide: Callable[[Snapshot], tuple[SourceChange, T]]) -> T:
        """Decide a change from a fresh snapshot and write it atomically; returns what ``decide`` returned.

        ``decide`` is pure and may raise (a SourceError): then nothing is written. It is called again
        if another change lands between the read and the write.
        """
        for _ in range(CHANGE_ATTEMPTS):
            with self.redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(self.sources_version_key)
                    snapshot = _snapshot(pipe.get(self.sources_version_key), pipe.hgetall(self.sources_key),
                                         pipe.zrange(self.due_key, 0, -1, withscores=True),
                                         pipe.get(self.sources_defaults_key))
                    change, result = decide(snapshot)
                    if not change:
                        pipe.unwatch()
                        return result
                    pipe.multi()
                    self._queue_change(pipe, change)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue
        raise redis.WatchError(f"sources kept changing: gave up after {CHANGE_ATTEMPTS} attempts")

    def _queue_change(self, pipe: Any, change: SourceChange) -> None:
        due = self.due_key
        if change.put:
            pipe.hset(self.sources_key, mapping={name: record.to_json() for name, record in change.put.items()})
        for name in change.delete:
            pipe.hdel(self.sources_key, name)
            pipe.zrem(due, name)
            pipe.delete(self.feed_key(name), self._key("polling", name))
            pipe.expire(self._key("seen", name), FORGET_AFTER_SECONDS)
            pipe.expire(self._key("imap", name), FORGET_AFTER_SECONDS)
        if change.unschedule:
            pipe.zrem(due, *change.unschedule)
        if change.schedule_new:
            pipe.zadd(due, change.schedule_new, nx=True)
        if change.schedule:
            pipe.zadd(due, change.schedule)
        for name in change.put:
            # a source added back under a name whose seen items were left to expire keeps them for good
            pipe.persist(self._key("seen", name))
            pipe.persist(self._key("imap", name))
        if change.defaults is not None:
            if change.defaults:
                pipe.set(self.sources_defaults_key, json.dumps(change.defaults, sort_keys=True))
            else:
                pipe.delete(self.sources_defaults_key)
        if change.put or change.delete or change.defaults is not None:
            pipe.incr(self.sources_version_key)

    def source_statuses(self, names: list[str]) -> dict[str, dict[str, str]]:
        """Each source's status hash (what its polls or mails left), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.feed_key(name))
        return {name: {text(k): text(v) for k, v in raw.items()}
                for name, raw in zip(names, pipe.execute() if names else [], strict=True)}

    def reconcile_schedule(self, now: float) -> list[str]:
        """Make the poll schedule hold exactly the active polled sources (new ones due now); returns those added.

        Writes under WATCH of the version, so a change landing meanwhile is never undone.
        """
        def decide(snapshot: Snapshot) -> tuple[SourceChange, list[str]]:
            wanted = set(active_polled(snapshot.records))
            missing = sorted(wanted - set(snapshot.due))
            stale = sorted(set(snapshot.due) - wanted)
            return SourceChange(schedule_new=dict.fromkeys(missing, now), unschedule=stale), missing

        return self.change_sources(decide)


def _snapshot(version: Any, raw: dict[Any, Any], due: list[tuple[Any, float]], defaults: Any = None) -> Snapshot:
    records = {}
    for name, value in sorted(raw.items()):  # by name: every reader lists them in one order
        try:
            record = SourceRecord.from_json(value)
        except (ValueError, KeyError, TypeError, SourceError) as exc:
            # a record edited by hand into nonsense must not stop every process: it is left out, loudly
            log.error("sources: record %r is unreadable and ignored: %s", text(name), exc)
            continue
        records[record.name] = record
    try:
        held = json.loads(defaults) if defaults else {}
    except ValueError:
        log.error("sources: the [defaults] record is unreadable and ignored")
        held = {}
    return Snapshot(int(version or 0), records, {text(n): float(s) for n, s in due},
                    held if isinstance(held, dict) else {})
