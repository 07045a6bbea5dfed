"""Published articles' versions: what a re-check compares against (``{p}:ver:{id}``), the re-check claims
(lua/claim_rechecks.lua), publishing a new version exactly once (lua/publish_update.lua), and where each
article's latest version is (``{p}:latest:{id}``) for the feeds out.

``{p}:ver:{id}`` is one small hash per article, written at its first publication and expiring
``FEEDSTREAM_UPDATE_WINDOW`` later (never extended: only articles younger than the window are re-checked):
``v`` version, ``t`` title digest and ``p`` paragraph digests (8 bytes each) of the latest version, ``e``/``m``
the page's ETag/Last-Modified, ``c`` last check (epoch), ``k`` near-duplicate cluster, ``d`` "1" when the
article is a near-copy of ``k``, ``f`` "1" when its body came from the feed (re-checked from the feed, not
the page). About 100 bytes plus 8 per paragraph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker.store.base import text
from worker.store.counters import CountersStore


@dataclass(frozen=True)
class VersionRecord:
    """What the store keeps of an article's latest version (see the module's docstring)."""

    version: int
    title: str  # digest (hex) of the title, "" for none
    paragraphs: bytes  # 8-byte paragraph digests, in order
    etag: str | None = None
    last_modified: str | None = None
    checked: float = 0.0
    cluster: str | None = None
    duplicate: bool = False  # duplicate_of is the cluster
    from_feed: bool = False

    def fields(self) -> dict[str, str | bytes | int | float]:
        out: dict[str, str | bytes | int | float] = {"v": self.version, "t": self.title, "p": self.paragraphs,
                                                     "c": int(self.checked), "k": self.cluster or ""}
        optional = {"e": self.etag, "m": self.last_modified, "d": "1" if self.duplicate else None,
                    "f": "1" if self.from_feed else None}
        out.update({k: v for k, v in optional.items() if v})
        return out

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> VersionRecord | None:
        if b"v" not in raw:
            return None
        value = {k.decode(): v for k, v in raw.items()}
        return cls(version=int(value["v"]), title=text(value.get("t", b"")), paragraphs=value.get("p", b""),
                   etag=text(value["e"]) if value.get("e") else None,
                   last_modified=text(value["m"]) if value.get("m") else None,
                   checked=float(value.get("c", b"0")), cluster=text(value["k"]) if value.get("k") else None,
                   duplicate=value.get("d") == b"1", from_feed=value.get("f") == b"1")


@dataclass(frozen=True)
class UpdateRequest:
    """One re-checked article for :meth:`UpdateStore.publish_updates`: ``document`` None when its text did not
    change (only the page's validators are kept)."""

    article_id: str
    url: str
    feed: str
    expected: int  # the version the re-check compared against
    document: str | None
    title: str = ""
    paragraphs: bytes = b""
    etag: str | None = None
    last_modified: str | None = None


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
        pipe = self.redis.pipeline(transaction=False)
        for article_id, record in records.items():
            key = self._version_key(article_id)
            pipe.hset(key, mapping=record.fields())  # type: ignore[arg-type]
            pipe.expire(key, self.updates.window)
        pipe.execute()

    def version_records(self, article_ids: Sequence[str]) -> list[VersionRecord | None]:
        """Each article's record; None when it has none (expired, or published with updates off)."""
        pipe = self.redis.pipeline(transaction=False)
        for article_id in article_ids:
            pipe.hgetall(self._version_key(article_id))
        return [VersionRecord.from_hash(raw) for raw in pipe.execute()] if article_ids else []

    def claim_rechecks(self, article_ids: Sequence[str], now: float) -> list[int]:
        """For each article: 1 its re-check is claimed now, 0 it was checked less than the minimum interval
        ago, -1 it has no record (older than the window, or never published with updates on)."""
        if not article_ids:
            return []
        keys = [self._version_key(article_id) for article_id in article_ids]
        reply = self._script("claim_rechecks")(keys=keys, args=[int(now), self.updates.min_interval])
        return [int(value) for value in reply]

    def publish_updates(self, requests: Sequence[UpdateRequest]) -> list[UpdateResult]:
        """Each request's new version published once (or its validators kept), in one round trip; each is its
        own atomic step (lua/publish_update.lua)."""
        if not requests:
            return []
        script = self._script("publish_update")
        pipe = self.redis.pipeline(transaction=False)
        for request in requests:
            keys = [self._version_key(request.article_id), self.updates_stream, self.counters_key,
                    self._latest_key(request.article_id)]
            args: list[Any] = [request.expected, request.document or "", request.article_id, request.url,
                               request.feed, request.title, request.paragraphs, request.etag or "",
                               request.last_modified or "", self.stream_maxlen, self.claim_ttl]
            script(keys=keys, args=args, client=pipe)
        return [_update_result(reply) for reply in pipe.execute()]

    def latest_versions(self, article_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The latest version's document of each article that has an update, by id (two round trips)."""
        if not article_ids:
            return {}
        pointers = self.redis.mget([self._latest_key(article_id) for article_id in article_ids])
        found = []
        pipe = self.redis.pipeline(transaction=False)
        for article_id, pointer in zip(article_ids, pointers, strict=True):
            if pointer:
                _version, stream_id, stream = text(pointer).split("|", 2)
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
