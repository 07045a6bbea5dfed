"""Reading the stream (its name is the contract, not prefixed), its consumer groups and its feeds-out
indexes (``{p}:out:all``, ``{p}:out:feed:{name}``, ``{p}:out:tag:{tag}``: streams of the article stream's
ids, written by the publish script), all on the publishing Redis."""

from __future__ import annotations

from typing import Any

import redis

from worker.store.base import StoreBase, text


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
