"""Entries the sources' rules dropped (issue 16): ``{p}:filtered``, and the extract job's notes on a source.

Keys (new; under the ``prefix`` namespace):

- ``{p}:filtered``  hash, JSON ``[source, rule]`` -> entries that rule dropped (the counter behind
  ``feedstream_entries_filtered_total{source,rule}``). Bound: one field per source and rule that ever
  dropped something.
- ``{p}:filtered:entries:<day>``  set of the outbox tokens (hashed feed and GUID) of the entries a rule
  dropped after extraction on that UTC day (days since the epoch), so that RQ running their batch
  again (another page failed) does not fetch them again. Bound: expires DROPPED_DAYS after it was
  last written; one token (32 bytes) per entry dropped after extraction.

The same counts go on the source's status hash (``filtered`` and ``filtered:<rule>``), written in
the same MULTI as the poll (entries dropped before their page is fetched) or by
:meth:`FilteredStore.settle_filtered` (entries dropped after extraction).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from worker.models import PollIntent
from worker.store.base import text
from worker.store.counters import CountersStore
from worker.store.outbox import OutboxStore

# A dropped entry's mark outlives any RQ retry of its batch (minutes to hours) with a day to spare.
DROPPED_DAYS = 2
_DAY = 86400


class FilteredStore(CountersStore, OutboxStore):
    @property
    def filtered_key(self) -> str:
        return self._key("filtered")

    def _dropped_key(self, day: int) -> str:
        return self._key("filtered", "entries", str(day))

    def dropped_after_extraction(self, tokens: Sequence[str]) -> set[str]:
        """Those of the outbox ``tokens`` a rule dropped after extraction (today or yesterday), in one
        round trip: a batch run again by RQ skips them instead of fetching their pages once more."""
        if not tokens:
            return set()
        today = int(time.time() // _DAY)
        pipe = self.redis.pipeline(transaction=False)
        for day in range(today - DROPPED_DAYS + 1, today + 1):
            pipe.smismember(self._dropped_key(day), list(tokens))
        dropped: set[str] = set()
        for flags in pipe.execute():
            dropped.update(token for token, flag in zip(tokens, flags, strict=True) if flag)
        return dropped

    def _queue_filtered(self, pipe: Any, source: str, dropped: Mapping[str, int]) -> None:
        for rule, amount in dropped.items():
            if amount:
                pipe.hincrby(self.filtered_key, json.dumps([source, rule], ensure_ascii=False), amount)

    def filtered_counts(self) -> dict[tuple[str, str], int]:
        """(source, rule) -> entries dropped, since the start."""
        out: dict[tuple[str, str], int] = {}
        for raw, value in self.redis.hgetall(self.filtered_key).items():
            try:
                source, rule = json.loads(text(raw))
            except (ValueError, TypeError):
                continue
            out[(str(source), str(rule))] = int(value)
        return out

    def settle_filtered(self, notes: Sequence[PollIntent], dropped: Sequence[str] = ()) -> None:
        """What an extract batch learnt of its sources, in one MULTI: each note's status fields and counts
        (entries the rules dropped after extraction, selector hits and misses).

        ``dropped``: the outbox tokens (hashed GUIDs) of the entries the rules dropped: their pending
        records are settled in the same step, since nothing will publish them (issue 14).
        """
        if not notes and not dropped:
            return
        pipe = self.redis.pipeline(transaction=True)
        for note in notes:
            key = self.feed_key(note.source)
            if note.fields:
                pipe.hset(key, mapping={k: str(v) for k, v in note.fields.items()})
            if note.clear:
                pipe.hdel(key, *note.clear)
            for field, amount in note.source_counts.items():
                if amount:
                    pipe.hincrby(key, field, amount)
            self._queue_counts(pipe, note.counters)
            self._queue_filtered(pipe, note.source, note.filtered)
        if dropped:
            key = self._dropped_key(int(time.time() // _DAY))
            pipe.sadd(key, *dropped)
            pipe.expire(key, DROPPED_DAYS * _DAY)
        self.settle_pending(dropped, pipe=pipe)
        pipe.execute()
