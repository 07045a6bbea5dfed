"""Every Redis key and script feedstream owns. Nothing else talks to Redis.

Keys, under the ``prefix`` namespace (default ``feedstream``):

- ``{p}:due``                 zset, feed name -> epoch of its next poll
- ``{p}:feed:{name}``         hash, the feed's status and HTTP validators
- ``{p}:seen:{name}``         zset, hashed item GUID -> last time the feed listed it
- ``{p}:claim:url:{key}``     string, canonical-URL claim -> article id
- ``{p}:claim:text:{key}``    string, normalised-text claim -> article id
- ``{p}:counters``            hash, monotonically increasing event counts
- ``{p}:host:{host}:not_before``  string, epoch before which nobody fetches from the host (Retry-After)
- ``{p}:host:{host}:inflight``    zset, request token -> lease expiry: the per-host semaphore
- ``{p}:host:{host}:robots``      string, the host's robots.txt body (empty: allow all), with a TTL
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


# A host's "not before" only ever moves later: two workers hit by 429s with
# different Retry-After values keep the longer wait.
# KEYS: not_before key; ARGV: epoch, ttl ms
_DEFER_HOST_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

# A counting semaphore with leases: a slot whose holder died (killed worker) lapses
# at its expiry instead of leaking. RQ's RateLimit counts jobs, not requests, and a
# job here makes requests to several hosts (an extract batch, robots.txt), so the
# slot is taken around each request instead.
# KEYS: inflight zset; ARGV: token, limit, now, lease seconds
_ACQUIRE_SLOT_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) + 60)
  return 1
end
return 0
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
        self._defer_host = client.register_script(_DEFER_HOST_LUA)
        self._acquire_slot = client.register_script(_ACQUIRE_SLOT_LUA)

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

    def revive(self, urls: Mapping[str, str], now: float) -> list[str]:
        """Make retired feeds whose configured URL changed since they were retired due now."""
        retired = [_text(n) for n in self.redis.zrangebyscore(self.due_key, "+inf", "+inf")]
        revived = []
        for name in retired:
            gone_url = self.redis.hget(self.feed_key(name), "retired_url")
            if name in urls and (gone_url is None or _text(gone_url) != urls[name]):
                self.redis.zadd(self.due_key, {name: now}, xx=True)
                revived.append(name)
        return revived

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

    def acquire_polls(self, names: Sequence[str], ttl: int) -> list[str]:
        """The feeds among ``names`` that no other poll holds; each is held for ``ttl`` s or until released."""
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.set(self._key("polling", name), "1", nx=True, ex=ttl)
        return [name for name, won in zip(names, pipe.execute(), strict=True) if won]

    def release_polls(self, names: Sequence[str]) -> None:
        if names:
            self.redis.delete(*(self._key("polling", name) for name in names))

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

    def record_deferral(self, name: str, fields: Mapping[str, str | int | float]) -> None:
        """Note on the status why a poll was put off (not an error: the count stays)."""
        self.redis.hset(self.feed_key(name), mapping={k: str(v) for k, v in fields.items()})

    def add_feed_count(self, name: str, field: str, amount: int) -> None:
        if amount:
            self.redis.hincrby(self.feed_key(name), field, amount)

    def clear_feed_fields(self, name: str, fields: Iterable[str]) -> None:
        names = list(fields)
        if names:
            self.redis.hdel(self.feed_key(name), *names)

    def retire(self, name: str, fields: Mapping[str, str | int | float]) -> None:
        """Stop polling the feed (e.g. HTTP 410): its slot moves to +inf, no scheduler claims it."""
        pipe = self.redis.pipeline()
        if fields:
            pipe.hset(self.feed_key(name), mapping={k: str(v) for k, v in fields.items()})
        pipe.zadd(self.due_key, {name: float("inf")}, xx=True)
        pipe.execute()

    # -- hosts: Retry-After, concurrency, robots.txt ------------------------------
    def _host_key(self, host: str, what: str) -> str:
        return self._key("host", host, what)

    def defer_host(self, host: str, until: float, now: float) -> bool:
        """Nobody fetches from ``host`` before ``until``; keeps a later time already set."""
        ttl_ms = max(int((until - now) * 1000), 1) + 1000
        return bool(self._defer_host(keys=[self._host_key(host, "not_before")], args=[repr(until), ttl_ms]))

    def host_not_before(self, host: str) -> float | None:
        value = self.redis.get(self._host_key(host, "not_before"))
        return float(value) if value else None

    def acquire_host_slot(self, host: str, token: str, limit: int, lease: float, now: float) -> bool:
        """Take one of ``limit`` request slots for ``host``, held until released or ``lease`` passes."""
        return bool(self._acquire_slot(keys=[self._host_key(host, "inflight")],
                                       args=[token, limit, repr(now), repr(lease)]))

    def release_host_slot(self, host: str, token: str) -> None:
        self.redis.zrem(self._host_key(host, "inflight"), token)

    def host_inflight(self, host: str, now: float) -> int:
        """Unexpired slots held for ``host``."""
        return int(self.redis.zcount(self._host_key(host, "inflight"), f"({now!r}", "+inf"))

    def cached_robots(self, host: str) -> bytes | None:
        """The host's cached robots.txt (b"" means allow all), or None when not cached."""
        value = self.redis.get(self._host_key(host, "robots"))
        return bytes(value) if value is not None else None

    def cache_robots(self, host: str, body: bytes, ttl: int) -> None:
        self.redis.set(self._host_key(host, "robots"), body, ex=max(int(ttl), 1))

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

    def published_ids(self, url_keys: Sequence[str]) -> list[str | None]:
        """:meth:`published_id` for many keys in one round trip."""
        if not url_keys:
            return []
        owners = self.redis.mget([self._key("claim", "url", key) for key in url_keys])
        return [_text(owner) if owner else None for owner in owners]

    def publish(self, article: Article, *, url_keys: Sequence[str], text_key: str | None) -> PublishResult:
        """Claim the article's URLs (and text) and XADD it, in one atomic step."""
        claims = [self._key("claim", "url", key) for key in url_keys]
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
