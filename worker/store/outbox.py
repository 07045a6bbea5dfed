"""The outbox: entries a poll queued that are not settled yet (``{p}:outbox``, ``{p}:outbox:entry``,
``{p}:outbox:job``).

An entry's life is tracked here, not inferred from RQ. The poll (or digest mail) that marks a GUID
seen records the new entry as pending in the same MULTI (``FeedStore.apply_poll``); the publish
script settles it in the same atomic step as the XADD or the duplicate verdict (lua/publish.lua);
an extract job settles the entries it finds already published. What stays pending while its RQ job
is gone (deleted, lost between RQ's pop and its start transaction, failed for good) is re-queued by
the sweeper (pipeline/outbox.py), so a GUID marked seen is never an entry lost.

Bound: an entry leaves when it is settled, or when the sweeper has re-queued it ``MAX_REQUEUES``
times and gives up (counted as ``entries_given_up``); every write renews the three keys' TTL
(``OUTBOX_KEY_TTL``), so an outbox nobody writes to any more disappears on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.store.base import StoreBase, text

OUTBOX_KEY_TTL = 30 * 86400


@dataclass(frozen=True)
class Pending:
    """One outbox entry as the sweeper sees it."""

    token: str  # the entry's hashed GUID (dedupe.guid_key), as in the feed's seen set
    job_id: str  # the RQ job that should settle it
    requeues: int  # times the sweeper re-queued it already
    entry: dict[str, Any] | None  # the Entry as a dict (None: the record is gone, only its token is left)


class OutboxStore(StoreBase):
    @property
    def outbox_keys(self) -> tuple[str, str, str]:
        """(the zset of check times, the job hash, the entry hash)."""
        return self._key("outbox"), self._key("outbox", "job"), self._key("outbox", "entry")

    def _queue_pending(self, pipe: Any, jobs: Mapping[str, Sequence[tuple[str, dict[str, Any]]]],
                       check_at: float) -> None:
        """Record entries as pending, ``{job id: [(token, entry dict), ...]}``, first checked at ``check_at``."""
        checks: dict[str, float] = {}
        owners: dict[str, str] = {}
        records: dict[str, str] = {}
        for job_id, entries in jobs.items():
            for token, entry in entries:
                checks[token] = check_at
                owners[token] = f"{job_id}|0"
                records[token] = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        if not checks:
            return
        zset, job_hash, entry_hash = self.outbox_keys
        pipe.zadd(zset, checks)
        pipe.hset(job_hash, mapping=owners)
        pipe.hset(entry_hash, mapping=records)
        for key in self.outbox_keys:
            pipe.expire(key, OUTBOX_KEY_TTL)

    def assign_pending(self, tokens: Iterable[str], check_at: float, *, job_id: str = "",
                       requeues: int | None = None) -> int:
        """Point pending entries at the job ``job_id`` ("": keep theirs), set how often the sweeper re-queued
        them (None: keep it), and check them next at ``check_at``. Entries settled meanwhile stay settled.
        Returns the number still pending (and so updated)."""
        args: list[Any] = [repr(check_at), OUTBOX_KEY_TTL]
        for token in tokens:
            args += [token, job_id, "" if requeues is None else requeues]
        if len(args) == 2:
            return 0
        return int(self._script("outbox_assign")(keys=list(self.outbox_keys), args=args))

    def settle_pending(self, tokens: Iterable[str], *, pipe: Any = None) -> None:
        """Entries settled outside the publish script (already published when their job ran, given up)."""
        tokens = list(tokens)
        if not tokens:
            return
        target = pipe if pipe is not None else self.redis.pipeline(transaction=True)
        zset, job_hash, entry_hash = self.outbox_keys
        target.zrem(zset, *tokens)
        target.hdel(job_hash, *tokens)
        target.hdel(entry_hash, *tokens)
        if pipe is None:
            target.execute()

    def due_pending(self, now: float, limit: int) -> list[Pending]:
        """Up to ``limit`` pending entries whose check time has come, oldest first (a bounded read)."""
        zset, job_hash, entry_hash = self.outbox_keys
        tokens = [text(t) for t in self.redis.zrangebyscore(zset, "-inf", now, start=0, num=limit)]
        if not tokens:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(job_hash, tokens)
        pipe.hmget(entry_hash, tokens)
        owners, records = pipe.execute()
        due = []
        for token, owner, record in zip(tokens, owners, records, strict=True):
            job_id, _, requeues = text(owner or "").partition("|")
            due.append(Pending(token, job_id, int(requeues or 0), json.loads(record) if record else None))
        return due

    def outbox_size(self) -> tuple[int, float | None]:
        """(entries pending, the earliest check time among them or None)."""
        zset = self.outbox_keys[0]
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(zset)
        pipe.zrange(zset, 0, 0, withscores=True)
        count, first = pipe.execute()
        return int(count), (float(first[0][1]) if first else None)

    def take_sweep_turn(self, seconds: float) -> bool:
        """True for one caller per ``seconds`` across every process: whose turn it is to sweep."""
        return bool(self.redis.set(self._key("outbox", "sweep"), "1", nx=True, px=max(int(seconds * 1000), 1)))
