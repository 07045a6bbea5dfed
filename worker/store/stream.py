"""Reading the stream (its name is the contract, not prefixed) and its consumer groups."""

from __future__ import annotations

from typing import Any

import redis

from worker.store.base import StoreBase, text


class StreamStore(StoreBase):
    def stream_length(self) -> int:
        return int(self.redis.xlen(self.stream))

    def read_stream(self, after: str = "0-0", count: int = 100, block_ms: int | None = None,
                    stream: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """Entries after the stream id ``after`` (XREAD), with decoded fields; ``stream``: another than ours
        (the updates stream)."""
        reply = self.redis.xread({stream or self.stream: after}, count=count, block=block_ms)
        entries: list[tuple[str, dict[str, str]]] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                entries.append((text(entry_id), {text(k): text(v) for k, v in fields.items()}))
        return entries

    def read_stream_before(self, before: str = "+", count: int = 100,
                           stream: str | None = None) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` entries older than the stream id ``before`` ("+": from the newest), newest first."""
        start = before if before == "+" else f"({before}"
        reply = self.redis.xrevrange(stream or self.stream, max=start, min="-", count=count)
        return [(text(entry_id), {text(k): text(v) for k, v in fields.items()}) for entry_id, fields in reply]

    def stream_groups(self) -> list[dict[str, Any]]:
        """Consumer groups on the stream: name, consumers, pending (read, not acked) entries."""
        try:
            groups = self.redis.xinfo_groups(self.stream)
        except redis.ResponseError:  # no stream yet
            return []
        return [{"name": text(g["name"]), "consumers": int(g["consumers"]), "pending": int(g["pending"])}
                for g in groups]
