"""Every Redis key and script feedstream owns. Nothing else talks to Redis.

Keys, under the ``prefix`` namespace (default ``feedstream``):

- ``{p}:due``                 zset, feed name -> epoch of its next poll
- ``{p}:feed:{name}``         hash, the feed's status and HTTP validators
- ``{p}:seen:{name}``         zset, hashed item GUID -> last time the feed listed it
- ``{p}:claim:url:{key}``     string, canonical-URL claim -> article id
- ``{p}:claim:text:{key}``    string, normalised-text claim -> article id
- ``{p}:claim:mid:{key}``     string, newsletter Message-ID claim -> article id
- ``{p}:counters``            hash, monotonically increasing event counts
- ``{p}:imap:{name}``         hash, an IMAP source's ``uidvalidity`` and ``last_uid``
- the stream itself (``articles`` by default) is not prefixed: it is the contract.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .models import Article

SEEN_WINDOW_SECONDS = 90 * 24 * 3600

# The dedupe claims and the XADD are one step: a retried or re-delivered job
# finds its own id on the claim ("already") and publishes nothing, so no crash
# between the two can publish twice or lose the article.
# KEYS: stream, counters, claim keys (URL claim first)
# ARGV: article id, article json, claim ttl seconds, maxlen (0: no trim), url, feed
_PUBLISH_LUA = """
for i = 3, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner then
    if owner == ARGV[1] then
      return {'already', owner}
    end
    redis.call('HINCRBY', KEYS[2], 'duplicates_exact', 1)
    return {'duplicate', owner}
  end
end
local sid
if tonumber(ARGV[4]) > 0 then
  sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
                   'article', ARGV[2], 'id', ARGV[1], 'url', ARGV[5], 'feed', ARGV[6])
else
  sid = redis.call('XADD', KEYS[1], '*',
                   'article', ARGV[2], 'id', ARGV[1], 'url', ARGV[5], 'feed', ARGV[6])
end
for i = 3, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[3])
end
redis.call('HINCRBY', KEYS[2], 'published', 1)
return {'published', sid}
"""

# Hand out the feeds whose poll is due and push each one's slot forward by
# the lease in the same step, so two schedulers never claim one slot.
# KEYS: due zset; ARGV: now, lease seconds, limit
_CLAIM_DUE_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, name in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), name)
end
return due
"""


@dataclass(frozen=True)
class PublishResult:
    """What the atomic publish did: ``published``, ``already`` (a retry) or ``duplicate``."""

    outcome: str
    article_id: str
    stream_id: str | None = None  # set when published
    duplicate_of: str | None = None  # set when duplicate: the earlier article's id


def connect(url: str) -> redis.Redis:
    """A Redis client that rides out a server restart by retrying with backoff."""
    return redis.Redis.from_url(
        url,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=20),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        health_check_interval=15,
        socket_connect_timeout=5,
        socket_keepalive=True,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Store:
    """Feed state, deduplication claims, the stream and counters, over one Redis client."""

    def __init__(self, client: redis.Redis, *, stream: str = "articles", prefix: str = "feedstream",
                 claim_ttl: int = 90 * 24 * 3600, stream_maxlen: int = 100_000) -> None:
        self.redis = client
        self.stream = stream
        self.prefix = prefix
        self.claim_ttl = claim_ttl
        self.stream_maxlen = stream_maxlen
        self._publish = client.register_script(_PUBLISH_LUA)
        self._claim_due = client.register_script(_CLAIM_DUE_LUA)

    # -- keys ---------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def due_key(self) -> str:
        return self._key("due")

    @property
    def counters_key(self) -> str:
        return self._key("counters")

    def feed_key(self, name: str) -> str:
        return self._key("feed", name)

    # -- schedule -----------------------------------------------------------
    def sync_feeds(self, names: Sequence[str], now: float) -> None:
        """Make the due set hold exactly ``names``: new feeds are due now, removed ones go."""
        current = {_text(n) for n in self.redis.zrange(self.due_key, 0, -1)}
        pipe = self.redis.pipeline()
        if names:
            pipe.zadd(self.due_key, dict.fromkeys(names, now), nx=True)
        stale = current - set(names)
        if stale:
            pipe.zrem(self.due_key, *stale)
        pipe.execute()

    def claim_due(self, now: float, lease: float, limit: int = 1000) -> list[str]:
        """Feeds due by ``now``; each one's slot moves ``lease`` seconds on, atomically."""
        names = self._claim_due(keys=[self.due_key], args=[now, lease, limit])
        return [_text(n) for n in names]

    def schedule(self, name: str, at: float) -> None:
        """Set the feed's next poll (only for feeds still configured, i.e. in the due set)."""
        self.redis.zadd(self.due_key, {name: at}, xx=True)

    def next_due(self) -> float | None:
        first = self.redis.zrange(self.due_key, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    def due_times(self) -> dict[str, float]:
        return {_text(n): float(s) for n, s in self.redis.zrange(self.due_key, 0, -1, withscores=True)}

    # -- feed status ----------------------------------------------------------
    def feed_status(self, name: str) -> dict[str, str]:
        raw = self.redis.hgetall(self.feed_key(name))
        return {_text(k): _text(v) for k, v in raw.items()}

    def validators(self, name: str) -> tuple[str | None, str | None]:
        """The feed's stored ETag and Last-Modified, for a conditional GET."""
        etag, modified = self.redis.hmget(self.feed_key(name), ["etag", "last_modified"])
        return (_text(etag) if etag else None, _text(modified) if modified else None)

    def record_poll(self, name: str, fields: Mapping[str, str | int | float], *,
                    error: bool, clear: Iterable[str] = ()) -> None:
        """Store a poll's outcome on the feed's status; counts consecutive errors."""
        key = self.feed_key(name)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
        if error:
            pipe.hincrby(key, "consecutive_errors", 1)
        else:
            pipe.hset(key, "consecutive_errors", 0)
            pipe.hdel(key, "last_error")
        for name_ in clear:
            pipe.hdel(key, name_)
        pipe.hincrby(key, "polls", 1)
        pipe.execute()

    def add_feed_count(self, name: str, field: str, amount: int) -> None:
        if amount:
            self.redis.hincrby(self.feed_key(name), field, amount)

    # -- seen items -----------------------------------------------------------
    def unseen(self, feed: str, guid_keys: Sequence[str]) -> list[bool]:
        """For each hashed GUID, whether this feed has not listed it before."""
        if not guid_keys:
            return []
        scores = self.redis.zmscore(self._key("seen", feed), list(guid_keys))
        return [score is None for score in scores]

    def mark_seen(self, feed: str, guid_keys: Sequence[str], now: float) -> None:
        """Remember GUIDs the feed lists now; forget those it has not listed for 90 days."""
        key = self._key("seen", feed)
        pipe = self.redis.pipeline()
        if guid_keys:
            pipe.zadd(key, dict.fromkeys(guid_keys, now))
        pipe.zremrangebyscore(key, "-inf", now - SEEN_WINDOW_SECONDS)
        pipe.execute()

    # -- claims and publishing ------------------------------------------------
    def published_id(self, url_key: str) -> str | None:
        """The id of the article already published under this canonical URL, if any."""
        owner = self.redis.get(self._key("claim", "url", url_key))
        return _text(owner) if owner else None

    def publish(self, article: Article, *, url_keys: Sequence[str], text_key: str | None,
                message_key: str | None = None) -> PublishResult:
        """Claim the article's URLs (and text, and a newsletter's Message-ID) and XADD it, in one atomic step."""
        claims = [self._key("claim", "url", key) for key in url_keys]
        if message_key:
            claims.append(self._key("claim", "mid", message_key))
        if text_key:
            claims.append(self._key("claim", "text", text_key))
        outcome, value = self._publish(
            keys=[self.stream, self.counters_key, *claims],
            args=[article.id, article.to_json(), self.claim_ttl, self.stream_maxlen, article.url, article.feed],
        )
        outcome, value = _text(outcome), _text(value)
        if outcome == "published":
            return PublishResult(outcome, article.id, stream_id=value)
        if outcome == "already":
            return PublishResult(outcome, article.id)
        return PublishResult(outcome, article.id, duplicate_of=value)

    # -- counters -------------------------------------------------------------
    def count(self, counts: Mapping[str, int]) -> None:
        pipe = self.redis.pipeline()
        for name, amount in counts.items():
            if amount:
                pipe.hincrby(self.counters_key, name, amount)
        pipe.execute()

    def counters(self) -> dict[str, int]:
        return {_text(k): int(v) for k, v in self.redis.hgetall(self.counters_key).items()}

    # -- the stream -------------------------------------------------------------
    def stream_length(self) -> int:
        return int(self.redis.xlen(self.stream))

    def last_stream_id(self) -> str:
        last = self.redis.xrevrange(self.stream, count=1)
        return _text(last[0][0]) if last else "0-0"

    def read_stream(self, after: str = "0-0", count: int = 100,
                    block_ms: int | None = None) -> list[tuple[str, dict[str, str]]]:
        """Entries after the stream id ``after`` (XREAD), with decoded fields."""
        reply = self.redis.xread({self.stream: after}, count=count, block=block_ms)
        entries: list[tuple[str, dict[str, str]]] = []
        for _stream, items in reply or []:
            for entry_id, fields in items:
                entries.append((_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}))
        return entries

    def read_stream_before(self, before: str = "+", count: int = 100) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` entries older than the stream id ``before`` ("+": from the newest), newest first."""
        start = before if before == "+" else f"({before}"
        reply = self.redis.xrevrange(self.stream, max=start, min="-", count=count)
        return [(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}) for entry_id, fields in reply]

    # -- newsletters ------------------------------------------------------------
    def imap_state(self, name: str) -> tuple[int | None, int]:
        """An IMAP source's (UIDVALIDITY, last UID handed to the queue); (None, 0) before the first poll."""
        validity, last = self.redis.hmget(self._key("imap", name), ["uidvalidity", "last_uid"])
        return (int(validity) if validity else None, int(last) if last else 0)

    def set_imap_state(self, name: str, uidvalidity: int, last_uid: int) -> None:
        self.redis.hset(self._key("imap", name), mapping={"uidvalidity": uidvalidity, "last_uid": last_uid})

    def beat(self, process: str, now: float) -> None:
        """Record that a process (e.g. the scheduler) is alive, for health checks."""
        self.redis.hset(self._key("heartbeats"), process, now)

    def last_beat(self, process: str) -> float | None:
        value = self.redis.hget(self._key("heartbeats"), process)
        return float(value) if value else None

    def ping(self) -> float:
        """Round-trip time to Redis in seconds; raises redis.ConnectionError when unreachable."""
        start = time.monotonic()
        self.redis.ping()
        return time.monotonic() - start
