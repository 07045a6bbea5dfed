"""A feed's learned boilerplate, per boilerplate period (a quarter of its TTL):
``{p}:boiler-count:{name}:{period}`` (hash: repeated paragraph fingerprint -> articles of the period that
carried it) and ``{p}:boiler-seen:{name}:{period}`` (its once-seen fingerprints, 8 bytes each).

Publishing counts them (see publish.lua's ``learn_boilerplate``); this reads them.
Memory (issue 7): nearly every fingerprint is story text that never comes back, so
those are not hash fields (~70 bytes each) but 8-byte records in one string per feed
and period, its latest BOILERPLATE_RECENT once-seen fingerprints of the period; only a
fingerprint seen again moves to the counts hash. Boilerplate recurs in most of a feed's
articles, so a window of a few thousand paragraphs finds it; a line repeated more rarely
than that is forgotten and stays in the text. Past BOILERPLATE_CAP fields in a period,
the ones seen in only two articles go.

Aging (issue 18): each period's keys expire a TTL after the period began, so a feed
remembers what it published in the last 22.5-30 days and nothing older: a feed that
stops publishing holds nothing after the TTL, and a busy one holds at most four periods.
A fingerprint's count is the sum over the live periods. The keys of the old form
(``{p}:boiler:{name}``, ``{p}:boiler-recent:{name}``, written before issue 18) are still
read until they expire (their TTL is no longer renewed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from worker.store.base import StoreBase

BOILERPLATE_CAP = 1_250  # repeated fingerprints per feed and period before those seen in two articles go
BOILERPLATE_RECENT = 1_024  # once-seen fingerprints kept per feed and period (8 bytes each)
BOILERPLATE_PERIODS = 4  # periods per TTL


class BoilerplateStore(StoreBase):
    @property
    def boilerplate_period_seconds(self) -> int:
        return max(1, self.boilerplate_ttl // BOILERPLATE_PERIODS)

    def boilerplate_period(self, now: float | None = None) -> int:
        return int((time.time() if now is None else now) // self.boilerplate_period_seconds)

    def _boilerplate_prefixes(self, feed: str) -> tuple[str, str]:
        """The feed's counts-hash and once-seen-string key prefixes (+ the period's number)."""
        return self._key("boiler-count", feed, ""), self._key("boiler-seen", feed, "")

    def _old_boilerplate_keys(self, feed: str) -> tuple[str, str]:
        """The feed's counts hash and once-seen string of the form before issue 18 (read until they expire)."""
        return self._key("boiler", feed), self._key("boiler-recent", feed)

    def _boilerplate_keys(self, feed: str, now: float | None = None) -> tuple[list[str], list[str]]:
        """Every counts hash and once-seen string that may hold the feed's fingerprints now, old form first."""
        old_counts, old_seen = self._old_boilerplate_keys(feed)
        count_prefix, seen_prefix = self._boilerplate_prefixes(feed)
        current = self.boilerplate_period(now)
        periods = range(current - BOILERPLATE_PERIODS + 1, current + 1)
        return ([old_counts, *(f"{count_prefix}{p}" for p in periods)],
                [old_seen, *(f"{seen_prefix}{p}" for p in periods)])

    def boilerplate_counts(self, feed: str, fingerprints: Sequence[str]) -> dict[str, int]:
        """How many earlier published articles of the feed carried each paragraph fingerprint.

        Absent: none (or so long ago that it was forgotten); 1: seen once, recently. Fingerprints are
        :func:`boilerplate.fingerprint`'s 16 hex digits. Publishing counts them (see :class:`PublishRequest`).
        """
        return self.boilerplate_counts_many([(feed, fingerprints)])[0]

    def boilerplate_counts_many(self, asks: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, int]]:
        """:meth:`boilerplate_counts` for each (feed, fingerprints), in one round trip."""
        pipe = self.publishing.pipeline(transaction=False)
        shapes: list[tuple[int, int]] = []
        for feed, fingerprints in asks:
            if fingerprints:
                counts_keys, seen_keys = self._boilerplate_keys(feed)
                raw = [bytes.fromhex(fp) for fp in fingerprints]
                for key in counts_keys:
                    pipe.hmget(key, raw)
                for key in seen_keys:
                    pipe.get(key)
                shapes.append((len(counts_keys), len(seen_keys)))
        replies = iter(pipe.execute() if shapes else [])
        shape = iter(shapes)
        out: list[dict[str, int]] = []
        for _, fingerprints in asks:
            if not fingerprints:
                out.append({})
                continue
            n_counts, n_seen = next(shape)
            totals = [0] * len(fingerprints)
            for _ in range(n_counts):
                for i, value in enumerate(next(replies)):
                    totals[i] += int(value) if value is not None else 0
            once: set[bytes] = set()
            for _ in range(n_seen):
                records = next(replies) or b""
                once.update(records[i:i + 8] for i in range(0, len(records), 8))
            counts = {fp: total for fp, total in zip(fingerprints, totals, strict=True) if total}
            counts.update({fp: 1 for fp in fingerprints if fp not in counts and bytes.fromhex(fp) in once})
            out.append(counts)
        return out
