"""Publishing: the dedupe claims (``{p}:claims:{period}:{shard}``; ``{p}:claim:{url,text,mid}:{key}`` of the
old form, read until they expire), the near-duplicate index (``{p}:nd:b:{period}:{bucket}``,
``{p}:nd:sig:{id}``), the XADD, the feeds-out indexes (``{p}:out:...``) and settling the entry's outbox
record, as one atomic script (lua/publish.lua) on the publishing Redis."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass
from typing import Any

from worker.models import Article, PublishResult
from worker.store import boilerplate as learned
from worker.store.base import text
from worker.store.boilerplate import BoilerplateStore
from worker.store.outbox import OutboxStore


@dataclass(frozen=True)
class NearKey:
    """What the near-duplicate index needs of one article: its packed MinHash and band digests."""

    packed: bytes
    bands: Sequence[bytes]  # 7 bytes each (see minhash.Signature.bands)
    min_agree: int  # values of the stored signature that must agree for a candidate to count


@dataclass(frozen=True)
class PublishRequest:
    """One article for :meth:`PublishStore.publish_many`, with the claims that make it a duplicate."""

    article: Article
    url_keys: Sequence[str]
    text_key: str | None
    near: NearKey | None = None
    message_key: str | None = None
    # the article's paragraph fingerprints (boilerplate.fingerprints), counted for its feed if it is published
    boilerplate: Sequence[str] = ()
    # the entry's outbox token (its hashed GUID), settled by the same step; None: not from the outbox (a mail)
    outbox_token: str | None = None


@dataclass(frozen=True)
class PublishArgs:
    """ARGV of lua/publish.lua. The fields' order IS the script's ARGV order (it unpacks ARGV[1..33] into
    locals of these names; tests/test_store.py checks they match); the band digests follow as ARGV[34..]."""

    article_id: str
    article_head: str  # the article's JSON without duplicate_of/cluster and the closing brace
    claim_ttl: int
    stream_maxlen: int  # 0: no trimming
    url: str
    feed: str
    claim_count: int  # claim keys, from KEYS[3] on
    near_mode: str  # off | mark | drop
    signature: bytes  # the packed MinHash; b"" for none
    min_agree: int  # values a stored signature must share with ours to make a near-copy
    near_window: int  # seconds an article stays findable
    signature_prefix: str  # + the id's hex: an article's signature key
    band_prefix: str  # + "{period}:{bucket}": a band bucket string
    period: int  # the current period's number (periods are a quarter of the window)
    periods_back: int  # earlier periods a lookup reads
    period_seconds: int
    index_id: bytes  # the article's 12 bytes in band records
    boilerplate: bytes  # paragraph fingerprints, 8 bytes each; b"" for none
    boilerplate_ttl: int
    boilerplate_cap: int  # repeated fingerprints per feed and period before those seen twice go
    recent_bytes: int  # once-seen fingerprint bytes kept per feed and period
    claim_records: bytes  # claim_count records of 13 bytes: kind letter (u, m, t), the key's 12-byte digest
    claim_prefix: str  # + "{period}:{shard}": a claim hash
    claim_period: int
    claim_periods_back: int
    claim_period_seconds: int
    boiler_seen_prefix: str  # + "{period}": the feed's once-seen fingerprints of the period
    boiler_count_prefix: str  # + "{period}": the feed's repeated-fingerprint counts of the period
    boiler_period: int
    boiler_periods_back: int
    boiler_period_seconds: int
    index_ttl: int  # seconds a feeds-out index outlives its last article
    outbox_token: str  # the entry's outbox record to settle; "" for none

    def argv(self, bands: Sequence[bytes]) -> list[Any]:
        return [*astuple(self), *bands]


def index_id(article_id: str) -> bytes:
    """The 12 bytes that stand for an article in the near-duplicate index: its id's own bytes when it is
    24 hex digits (as :func:`dedupe.article_id` makes them), else a hash of it."""
    try:
        raw = bytes.fromhex(article_id)
    except ValueError:
        raw = b""
    return raw if len(raw) == 12 else hashlib.blake2b(article_id.encode("utf-8"), digest_size=12).digest()


def claim_record(kind: str, key: str) -> bytes:
    """A claim as the publish script stores it: its kind letter (``u``rl, ``t``ext, ``m``essage-id), then the
    key's 12 bytes (:func:`index_id`: keys are 24 hex digits as :mod:`dedupe.keys` makes them)."""
    return kind.encode() + index_id(key)


CLAIM_PERIODS = 4  # claim periods per claim TTL


def article_json_head(article: Article) -> str:
    """The article's JSON without ``duplicate_of``/``cluster`` and the closing brace (the publish script adds them)."""
    doc = {k: v for k, v in asdict(article).items() if k not in ("duplicate_of", "cluster")}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))[:-1]


class PublishStore(BoilerplateStore, OutboxStore):
    @property
    def claim_period_seconds(self) -> int:
        return max(1, self.claim_ttl // CLAIM_PERIODS)

    def _claim_hashes(self, record: bytes, period: int) -> list[str]:
        """The claim hashes that may hold ``record`` in ``period``, level by level (see lua/publish.lua)."""
        digits = record[1:4].hex()
        return [self._key("claims", str(period), digits[:n]) for n in (3, 4, 5)]

    def published_ids(self, url_keys: Sequence[str]) -> list[str | None]:
        """For each canonical-URL key, the id of the article already published under it, if any (one round trip)."""
        if not url_keys:
            return []
        now = int(time.time() // self.claim_period_seconds)
        periods = range(now - math.ceil(self.claim_ttl / self.claim_period_seconds), now + 1)
        pipe = self.publishing.pipeline(transaction=False)
        for key in url_keys:
            record = claim_record("u", key)
            pipe.get(self._key("claim", "url", key))
            for period in periods:
                for name in self._claim_hashes(record, period):
                    pipe.hget(name, record)
        replies = pipe.execute()
        per_key = 1 + 3 * len(periods)
        owners = [next((r for r in replies[i * per_key:(i + 1) * per_key] if r is not None), None)
                  for i in range(len(url_keys))]
        return [text(owner) if owner else None for owner in owners]

    def publish(self, article: Article, *, url_keys: Sequence[str], text_key: str | None,
                near: NearKey | None = None, message_key: str | None = None,
                boilerplate: Sequence[str] = (), outbox_token: str | None = None) -> PublishResult:
        """Claim the article's URLs (and text, and a newsletter's Message-ID), check it for near-copies and XADD it.

        One atomic step.
        With ``near`` and a near mode other than ``off``, an article whose
        signature agrees with a stored one (found through a shared band) is
        published with ``duplicate_of``/``cluster`` set to that cluster's first
        article (``mark``) or not published (``drop``); either way its own
        bands and signature are indexed for ``near_window`` seconds. A published
        article's ``boilerplate`` fingerprints are counted for its feed in the same step, its stream id goes
        to the feeds-out indexes of all articles, its feed and its tags, and the entry's outbox record
        (``outbox_token``) is settled whatever the verdict.
        """
        return self.publish_many([PublishRequest(article, url_keys, text_key, near, message_key, boilerplate,
                                                 outbox_token)])[0]

    def publish_many(self, requests: Sequence[PublishRequest]) -> list[PublishResult]:
        """:meth:`publish` for each request, in order, in one round trip (each one still its own atomic step)."""
        if not requests:
            return []
        script = self._script("publish", publishing=True)
        pipe = self.publishing.pipeline(transaction=False)
        for request in requests:
            keys, argv = self._publish_call(request)
            script(keys=keys, args=argv, client=pipe)
        replies = pipe.execute()
        if self.split:
            # Every reply is a verdict. A crash before this leaves the entries pending: the sweeper queues
            # them again, and their job finds them published and settles them.
            self.settle_pending(request.outbox_token for request in requests if request.outbox_token)
        return [self._publish_result(request.article, reply)
                for request, reply in zip(requests, replies, strict=True)]

    def _publish_call(self, request: PublishRequest) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the publish script for one request (see lua/publish.lua's header)."""
        article = request.article
        claims = [("u", "url", key) for key in request.url_keys]
        if request.message_key:
            claims.append(("m", "mid", request.message_key))
        if request.text_key:
            claims.append(("t", "text", request.text_key))
        raw_id = index_id(article.id)
        near = request.near if self.near_mode != "off" else None
        now = time.time()
        period_seconds = max(1, self.near_window // 4)
        claim_seconds = self.claim_period_seconds
        count_prefix, seen_prefix = self._boilerplate_prefixes(article.feed)
        args = PublishArgs(
            article_id=article.id, article_head=article_json_head(article), claim_ttl=self.claim_ttl,
            stream_maxlen=self.stream_maxlen, url=article.url, feed=article.feed, claim_count=len(claims),
            near_mode=self.near_mode, signature=near.packed if near else b"", min_agree=near.min_agree if near else 0,
            near_window=self.near_window, signature_prefix=self._key("nd", "sig", ""),
            band_prefix=self._key("nd", "b", ""), period=int(now // period_seconds),
            periods_back=-(-self.near_window // period_seconds), period_seconds=period_seconds, index_id=raw_id,
            boilerplate=b"".join(bytes.fromhex(fp) for fp in request.boilerplate),
            boilerplate_ttl=self.boilerplate_ttl, boilerplate_cap=learned.BOILERPLATE_CAP,
            recent_bytes=8 * learned.BOILERPLATE_RECENT,
            claim_records=b"".join(claim_record(letter, key) for letter, _, key in claims),
            claim_prefix=self._key("claims", ""), claim_period=int(now // claim_seconds),
            claim_periods_back=math.ceil(self.claim_ttl / claim_seconds), claim_period_seconds=claim_seconds,
            boiler_seen_prefix=seen_prefix, boiler_count_prefix=count_prefix,
            boiler_period=self.boilerplate_period(now), boiler_periods_back=learned.BOILERPLATE_PERIODS - 1,
            boiler_period_seconds=self.boilerplate_period_seconds, index_ttl=self.claim_ttl,
            # with a publishing Redis of its own the outbox is not beside the claims: publish_many settles it
            outbox_token="" if self.split else request.outbox_token or "",
        )
        indexes = [self.out_index_key("all"), self.out_index_key("feed", article.feed),
                   *(self.out_index_key("tag", tag) for tag in dict.fromkeys(article.tags))]
        keys = [self.stream, self.counters_key, self.out_since_key, *self.outbox_keys,
                *(self._key("claim", kind, key) for _, kind, key in claims),
                *([self._key("nd", "sig", raw_id.hex())] if near else []),
                *self._old_boilerplate_keys(article.feed), *indexes]
        return keys, args.argv(near.bands if near else ())

    @staticmethod
    def _publish_result(article: Article, reply: Sequence[Any]) -> PublishResult:
        outcome, value = text(reply[0]), text(reply[1])
        if outcome == "published":
            cluster = text(reply[2]) if len(reply) > 2 else article.id
            return PublishResult(outcome, article.id, stream_id=value,
                                 duplicate_of=cluster if len(reply) > 2 else None, cluster=cluster)
        if outcome == "already":
            return PublishResult(outcome, article.id)
        if outcome == "near_dropped":
            return PublishResult(outcome, article.id, duplicate_of=value, cluster=value)
        return PublishResult(outcome, article.id, duplicate_of=value)
