"""Reading the stream (its name is the contract, not prefixed), its consumer groups and its feeds-out
indexes (``{p}:out:all``, ``{p}:out:feed:{name}``, ``{p}:out:tag:{tag}``: streams of the article stream's
ids, written by the publish script), all on the publishing Redis."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis

from worker.store.base import StoreBase, text

# Entries a lag count reads at most, from each side of a group's position: the cost stays small however
# long the stream (past it, the lag is interpolated from the entry ids' timestamps and says so).
LAG_COUNT_LIMIT = 1000


def _id(value: Any) -> tuple[int, int]:
    ms, _, seq = text(value).partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class GroupHealth:
    """How far a consumer group is behind, and what trimming took from it before it read it."""

    name: str
    consumers: int
    pending: int  # delivered, not yet acknowledged
    last_delivered_id: str
    lag: int  # entries in the stream after last_delivered_id: not delivered yet
    lag_exact: bool
    trimmed: int  # entries trimmed (MAXLEN) before this group was delivered them
    trimmed_exact: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StreamStore(StoreBase):
    def stream_length(self) -> int:
        return int(self.publishing.xlen(self.stream))

    def read_stream(self, after: str = "0-0", count: int = 100, block_ms: int | None = None,
                    stream: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """Entries after the stream id ``after`` (XREAD), with decoded fields; ``stream``: another than ours
        (the updates stream)."""
        reply = self.publishing.xread({stream or self.stream: after}, count=count, block=block_ms)
        entries: list[tuple[str, dict[str, str]]] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                entries.append((text(entry_id), {text(k): text(v) for k, v in fields.items()}))
        return entries

    def read_stream_before(self, before: str = "+", count: int = 100,
                           stream: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` entries older than the stream id ``before`` ("+": from the newest), newest first."""
        start = before if before == "+" else f"({before}"
        reply = self.publishing.xrevrange(stream or self.stream, max=start, min="-", count=count)
        return [(text(entry_id), {text(k): text(v) for k, v in fields.items()}) for entry_id, fields in reply]

    def index_ids(self, index: str, before: str = "+", count: int = 50) -> list[tuple[str, str]]:
        """Up to ``count`` (stream id, article id) pairs from a feeds-out index, older than ``before`` ("+": the
        newest), newest first."""
        start = before if before == "+" else f"({before}"
        return [(text(entry_id), text(fields.get(b"i", b"")))
                for entry_id, fields in self.publishing.xrevrange(index, max=start, min="-", count=count)]

    def entries(self, ids: list[str]) -> list[tuple[str, dict[str, str]]]:
        """The stream's entries of these ids, in their order, in one round trip; trimmed ones are left out."""
        pipe = self.publishing.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(self.stream, min=entry_id, max=entry_id, count=1)
        return [(text(found[0][0]), {text(k): text(v) for k, v in found[0][1].items()})
                for found in pipe.execute() if found]

    def out_since(self) -> str | None:
        """The first stream id published with feeds-out indexes; older entries are found by scanning."""
        value = self.publishing.get(self.out_since_key)
        return text(value) if value else None

    def stream_groups(self) -> list[dict[str, Any]]:
        """Consumer groups on the stream: name, consumers, pending (read, not acked) entries."""
        try:
            groups = self.publishing.xinfo_groups(self.stream)
        except redis.ResponseError:  # no stream yet
            return []
        return [{"name": text(g["name"]), "consumers": int(g["consumers"]), "pending": int(g["pending"])}
                for g in groups]

    def group_health(self, published: int | None = None) -> list[GroupHealth]:
        """Lag, pending and entries lost to trimming for each consumer group, with bounded reads.

        Redis 7 reports ``lag`` and ``entries-read`` itself (used when present). Redis 6.2 does not: the lag
        is counted with at most LAG_COUNT_LIMIT entries read on each side of the group's position, and
        entries trimmed before a group read them are counted from ``published`` (our count of every XADD
        to the stream; None: unknown) when the group read nothing, else interpolated from the ids' times.
        """
        try:
            groups = self.redis.xinfo_groups(self.stream)
            info = self.redis.xinfo_stream(self.stream)
        except redis.ResponseError:  # no stream yet
            return []
        length = int(info["length"])
        first = _id(info["first-entry"][0]) if info.get("first-entry") else None
        last = _id(info["last-entry"][0]) if info.get("last-entry") else None
        added = info.get("entries-added")  # Redis 7
        added = int(added) if added is not None else (published if published is not None and published >= length
                                                      else None)
        health = []
        for group in groups:
            delivered = text(group.get("last-delivered-id", "0-0"))
            lag, lag_exact = self._lag(group, delivered, length, first, last)
            trimmed, trimmed_exact = self._trimmed(group, delivered, length, first, last, added)
            health.append(GroupHealth(text(group["name"]), int(group["consumers"]), int(group["pending"]), delivered,
                                      lag, lag_exact, trimmed, trimmed_exact))
        return health

    def _lag(self, group: dict[Any, Any], delivered: str, length: int, first: tuple[int, int] | None,
             last: tuple[int, int] | None) -> tuple[int, bool]:
        if group.get("lag") is not None:  # Redis 7, when it can tell
            return int(group["lag"]), True
        position = _id(delivered)
        if first is None or last is None or position >= last:
            return 0, True
        if position < first:
            return length, True
        after = self.redis.xrange(self.stream, min=f"({delivered}", max="+", count=LAG_COUNT_LIMIT)
        if len(after) < LAG_COUNT_LIMIT:
            return len(after), True
        before = self.redis.xrevrange(self.stream, max=delivered, min="-", count=LAG_COUNT_LIMIT)
        if len(before) < LAG_COUNT_LIMIT:
            return length - len(before), True
        span = max(last[0] - first[0], 1)
        return round(length * (last[0] - position[0]) / span), False

    @staticmethod
    def _trimmed(group: dict[Any, Any], delivered: str, length: int, first: tuple[int, int] | None,
                 last: tuple[int, int] | None, added: int | None) -> tuple[int, bool]:
        position = _id(delivered)
        if first is None or position >= first or (added is not None and added <= length):
            return 0, True
        # the group's position is older than the stream's first entry: what lay between was trimmed unread
        total = None if added is None else added - length  # every entry trimmed so far
        read = group.get("entries-read")  # Redis 7: entries the group was delivered
        if total is not None and read is not None:
            return max(total - int(read), 0), True
        if total is not None and position == (0, 0):
            return total, True
        if last is not None and last[0] > first[0] and length > 1:
            rate = (length - 1) / (last[0] - first[0])  # entries per millisecond, as the stream holds them now
            guess = max(round(rate * (first[0] - position[0])), 1)
            return (min(guess, total) if total is not None else guess), False
        return (total if total is not None else 1), False
