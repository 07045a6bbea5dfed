"""Published articles' versions: what a re-check compares against (``{p}:ver:{id}``), the re-check claims
(lua/claim_rechecks.lua), publishing a new version exactly once (lua/publish_update.lua), and where each
article's latest version is (``{p}:latest:{id}``) for the feeds out.

``{p}:ver:{id}`` is one string per article, written at its first publication and expiring
``FEEDSTREAM_UPDATE_WINDOW`` later (never extended: only articles younger than the window are re-checked).
Its bytes (big-endian; see :class:`VersionRecord`): version (4), last check in epoch seconds (4), flags (1:
duplicate of its cluster, body from the feed), title digest (8), cluster id (12, zeros for none), ETag and
Last-Modified (a length byte each, then the text; longer than 255 bytes: not kept), then the paragraph
digests (8 bytes each). In Redis that is 377 bytes per corpus article (``MEMORY USAGE``, 24.5 paragraphs
on average, ``bench/updates.py``), where a hash of the same fields took 932 (its digests field, over
64 bytes, turns it into a hash table). The scripts read the version and the check time at fixed
offsets; everything else only Python reads.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from worker.store.base import text
from worker.store.counters import CountersStore

_HEAD = struct.Struct(">IIB8s12s")  # version, checked, flags, title digest, cluster
CHECKED_AT = 4  # byte offset of the last check time (lua/claim_rechecks.lua reads and writes it there)
_DUPLICATE, _FROM_FEED = 1, 2


@dataclass(frozen=True)
class VersionRecord:
    """What the store keeps of an article's latest version (see the module's docstring)."""

    version: int
    title: str  # digest (hex) of the title, "" for none
    paragraphs: bytes  # 8-byte paragraph digests, in order
    etag: str | None = None
    last_modified: str | None = None
    checked: float = 0.0
    cluster: str | None = None  # 24 hex digits
    duplicate: bool = False  # duplicate_of is the cluster
    from_feed: bool = False

    def packed(self) -> bytes:
        cluster = bytes.fromhex(self.cluster) if self.cluster and len(self.cluster) == 24 else bytes(12)
        flags = (_DUPLICATE if self.duplicate else 0) | (_FROM_FEED if self.from_feed else 0)
        head = _HEAD.pack(self.version, int(self.checked), flags, bytes.fromhex(self.title or "0" * 16), cluster)
        return head + _short(self.etag) + _short(self.last_modified) + self.paragraphs

    @classmethod
    def unpack(cls, raw: bytes) -> VersionRecord | None:
        """The record in ``raw``; None for none (or bytes that are not one)."""
        try:
            version, checked, flags, title, cluster = _HEAD.unpack_from(raw)
            at = _HEAD.size
            etag, at = _read_short(raw, at)
            last_modified, at = _read_short(raw, at)
        except (struct.error, IndexError, UnicodeDecodeError):
            return None
        return cls(version=version, title=title.hex() if any(title) else "", paragraphs=raw[at:], etag=etag,
                   last_modified=last_modified, checked=float(checked),
                   cluster=cluster.hex() if any(cluster) else None, duplicate=bool(flags & _DUPLICATE),
                   from_feed=bool(flags & _FROM_FEED))


def _short(value: str | None) -> bytes:
    data = (value or "").encode("utf-8")
    return bytes([len(data)]) + data if len(data) < 256 else b"\0"


def _read_short(raw: bytes, at: int) -> tuple[str | None, int]:
    size = raw[at]
    return (raw[at + 1:at + 1 + size].decode("utf-8") or None), at + 1 + size


@dataclass(frozen=True)
class UpdateRequest:
    """One re-checked article for :meth:`UpdateStore.publish_updates`: the ``record`` it was compared against,
    and ``document`` None when its text did not change (only the page's validators are kept)."""

    article_id: str
    url: str
    feed: str
    record: VersionRecord
    document: str | None
    title: str = ""  # the new version's title digest
    paragraphs: bytes = b""  # and paragraph digests
    etag: str | None = None
    last_modified: str | None = None

    def next_record(self) -> VersionRecord:
        """The record once this request is applied: the next version, or the same with new validators."""
        if self.document is None:
            return replace(self.record, etag=self.etag, last_modified=self.last_modified)
        return replace(self.record, version=self.record.version + 1, title=self.title, paragraphs=self.paragraphs,
                       etag=self.etag, last_modified=self.last_modified)


@dataclass(frozen=True)
class UpdateResult:
    """``published`` (``stream_id``, ``version``), ``unchanged``, ``superseded`` (another re-check published
    ``version`` first: a retry or a duplicate) or ``gone`` (the record expired)."""

    outcome: str
    stream_id: str | None = None
    version: int | None = None


class UpdateStore(CountersStore):
    @property
    def separate_updates_stream(self) -> str:
        """``<stream>:updates``: where update events go with FEEDSTREAM_UPDATES=separate (the default)."""
        return f"{self.stream}:updates"

    @property
    def updates_stream(self) -> str:
        """Where update events go now: ``<stream>:updates`` (separate), or the stream itself (inline)."""
        return self.stream if self.updates.mode == "inline" else self.separate_updates_stream

    def _version_key(self, article_id: str) -> str:
        return self._key("ver", article_id)

    def _latest_key(self, article_id: str) -> str:
        return self._key("latest", article_id)

    def remember_versions(self, records: Mapping[str, VersionRecord]) -> None:
        """Keep each first-published article's record (by id) for the update window, in one round trip."""
        if not records:
            return
        pipe = self.publishing.pipeline(transaction=False)
        for article_id, record in records.items():
            pipe.set(self._version_key(article_id), record.packed(), ex=self.updates.window)
        pipe.execute()

    def version_records(self, article_ids: Sequence[str]) -> list[VersionRecord | None]:
        """Each article's record; None when it has none (expired, or published with updates off)."""
        if not article_ids:
            return []
        raw = self.publishing.mget([self._version_key(article_id) for article_id in article_ids])
        return [VersionRecord.unpack(value) if value else None for value in raw]

    def claim_rechecks(self, article_ids: Sequence[str], now: float) -> list[int]:
        """For each article: 1 its re-check is claimed now, 0 it was checked less than the minimum interval
        ago, -1 it has no record (older than the window, or never published with updates on)."""
        if not article_ids:
            return []
        keys = [self._version_key(article_id) for article_id in article_ids]
        claim = self._script("claim_rechecks", publishing=True)
        reply = claim(keys=keys, args=[int(now), self.updates.min_interval, CHECKED_AT])
        return [int(value) for value in reply]

    def publish_updates(self, requests: Sequence[UpdateRequest]) -> list[UpdateResult]:
        """Each request's new version published once (or its validators kept), in one round trip; each is its
        own atomic step (lua/publish_update.lua)."""
        if not requests:
            return []
        script = self._script("publish_update", publishing=True)
        pipe = self.publishing.pipeline(transaction=False)
        for request in requests:
            keys = [self._version_key(request.article_id), self.updates_stream, self.counters_key,
                    self._latest_key(request.article_id)]
            args: list[Any] = [struct.pack(">I", request.record.version), request.document or "",
                               request.next_record().packed(), request.article_id, request.url, request.feed,
                               self.stream_maxlen, self.claim_ttl]
            script(keys=keys, args=args, client=pipe)
        return [_update_result(reply) for reply in pipe.execute()]

    def latest_pointers(self, article_ids: Sequence[str]) -> dict[str, str]:
        """The stream id of the latest update event of each article that has one, by id (one round trip):
        what feeds out need for their validators, without reading an entry."""
        return {article_id: stream_id for article_id, (stream_id, _) in self._latest_pointers(article_ids).items()}

    def _latest_pointers(self, article_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        if not article_ids:
            return {}
        pointers = self.publishing.mget([self._latest_key(article_id) for article_id in article_ids])
        out: dict[str, tuple[str, str]] = {}
        for article_id, pointer in zip(article_ids, pointers, strict=True):
            if pointer:
                _version, stream_id, stream = text(pointer).split("|", 2)
                out[article_id] = (stream_id, stream)
        return out

    def latest_versions(self, article_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The latest version's document of each article that has an update, by id (two round trips)."""
        pointers = self._latest_pointers(article_ids)
        found = []
        pipe = self.publishing.pipeline(transaction=False)
        for article_id, (stream_id, stream) in pointers.items():
            found.append((article_id, stream_id))
            pipe.xrange(stream, min=stream_id, max=stream_id, count=1)
        out: dict[str, dict[str, Any]] = {}
        for (article_id, stream_id), reply in zip(found, pipe.execute() if found else [], strict=True):
            if reply:  # absent once trimmed from its stream
                fields = {text(k): text(v) for k, v in reply[0][1].items()}
                out[article_id] = {"stream_id": stream_id, "article": fields.get("article", "")}
        return out


def _update_result(reply: Sequence[Any]) -> UpdateResult:
    outcome = text(reply[0])
    if outcome == "published":
        return UpdateResult(outcome, stream_id=text(reply[1]), version=int(reply[2]))
    if outcome == "superseded":
        return UpdateResult(outcome, version=int(reply[1]))
    return UpdateResult(outcome)
