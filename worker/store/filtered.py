"""Entries the sources' rules dropped (issue 16): ``{p}:filtered``, and the extract job's notes on a source.

Key (new; under the ``prefix`` namespace):

- ``{p}:filtered``  hash, JSON ``[source, rule]`` -> entries that rule dropped (the counter behind
  ``feedstream_entries_filtered_total{source,rule}``). Bound: one field per source and rule that ever
  dropped something.

The same counts go on the source's status hash (``filtered`` and ``filtered:<rule>``), written in
the same MULTI as the poll (entries dropped before their page is fetched) or by
:meth:`FilteredStore.settle_filtered` (entries dropped after extraction).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from worker.models import PollIntent
from worker.store.base import text
from worker.store.counters import CountersStore
from worker.store.outbox import OutboxStore


class FilteredStore(CountersStore, OutboxStore):
    @property
    def filtered_key(self) -> str:
        return self._key("filtered")

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
        self.settle_pending(dropped, pipe=pipe)
        pipe.execute()
