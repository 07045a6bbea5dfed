"""A feed's learned boilerplate: ``{p}:boiler:{name}`` (repeated paragraph fingerprints -> articles that
carried them) and ``{p}:boiler-recent:{name}`` (its latest once-seen fingerprints, 8 bytes each).

Publishing counts them (see publish.lua's ``learn_boilerplate``); this reads them.
Memory (issue 7): nearly every fingerprint is story text that never comes back, so
those are not hash fields (~70 bytes each) but 8-byte records in one string per feed,
its latest BOILERPLATE_RECENT once-seen fingerprints; only a fingerprint seen again
moves to the counts hash. Boilerplate recurs in most of a feed's articles, so a window
of a few thousand paragraphs finds it; a line repeated more rarely than that is
forgotten and stays in the text. Past BOILERPLATE_CAP fields, the ones seen in only
two articles go.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.store.base import StoreBase

BOILERPLATE_TTL = 30 * 24 * 3600
BOILERPLATE_CAP = 5_000  # repeated fingerprints per feed before those seen in only two articles are forgotten
BOILERPLATE_RECENT = 4_096  # once-seen fingerprints remembered per feed (8 bytes each)


class BoilerplateStore(StoreBase):
    def _boilerplate_keys(self, feed: str) -> tuple[str, str]:
        """The feed's counts hash and recent-fingerprints string."""
        return self._key("boiler", feed), self._key("boiler-recent", feed)

    def boilerplate_counts(self, feed: str, fingerprints: Sequence[str]) -> dict[str, int]:
        """How many earlier published articles of the feed carried each paragraph fingerprint.

        Absent: none (or so long ago that it was forgotten); 1: seen once, recently. Fingerprints are
        :func:`boilerplate.fingerprint`'s 16 hex digits. Publishing counts them (see :class:`PublishRequest`).
        """
        return self.boilerplate_counts_many([(feed, fingerprints)])[0]

    def boilerplate_counts_many(self, asks: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, int]]:
        """:meth:`boilerplate_counts` for each (feed, fingerprints), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for feed, fingerprints in asks:
            if fingerprints:
                counts_key, recent_key = self._boilerplate_keys(feed)
                pipe.hmget(counts_key, [bytes.fromhex(fp) for fp in fingerprints])
                pipe.get(recent_key)
        replies = iter(pipe.execute() if any(fps for _, fps in asks) else [])
        out: list[dict[str, int]] = []
        for _, fingerprints in asks:
            if not fingerprints:
                out.append({})
                continue
            values, recent = next(replies), next(replies) or b""
            once = {recent[i:i + 8] for i in range(0, len(recent), 8)}
            counts = {fp: int(v) for fp, v in zip(fingerprints, values, strict=True) if v is not None}
            counts.update({fp: 1 for fp in fingerprints if fp not in counts and bytes.fromhex(fp) in once})
            out.append(counts)
        return out
