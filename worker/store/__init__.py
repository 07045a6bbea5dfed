"""Every Redis key and script feedstream owns. Nothing else talks to Redis.

Keys, under the ``prefix`` namespace (default ``feedstream``):

- ``{p}:due``                 zset, feed name -> epoch of its next poll
- ``{p}:feed:{name}``         hash, the feed's status and HTTP validators
- ``{p}:seen:{name}``         zset, hashed item GUID (12 bytes) -> last time the feed listed it (epoch seconds)
- ``{p}:claim:url:{key}``     string, canonical-URL claim -> article id
- ``{p}:claim:text:{key}``    string, normalised-text claim -> article id
- ``{p}:claim:mid:{key}``     string, newsletter Message-ID claim -> article id
- ``{p}:counters``            hash, monotonically increasing event counts
- ``{p}:imap:{name}``         hash, an IMAP source's ``uidvalidity`` and ``last_uid``
- ``{p}:host:{host}:not_before``  string, epoch before which nobody fetches from the host (Retry-After)
- ``{p}:host:{host}:inflight``    zset, request token -> lease expiry: the per-host semaphore
- ``{p}:host:{host}:robots``      string, the host's robots.txt body (empty: allow all), with a TTL
- ``{p}:nd:b:{period}:{bucket}`` string, LSH band records (6-byte band probe + 12-byte article id) whose
  digest starts with the bucket's 1, 2 or 4 hex digits, see the publish script
- ``{p}:nd:sig:{id}``         string, "<cluster id>|<packed MinHash>" (expires with the window)
- ``{p}:http``                hash, ``{kind}:{status}`` -> responses seen (kind: feed, page)
- ``{p}:delay``               hash, publish-delay histogram: bucket upper bound -> count, ``sum``, ``count``
- ``{p}:heartbeats``          hash, process -> epoch of its last sign of life
- ``{p}:boiler:{name}``       hash, paragraph fingerprint (8 bytes) -> distinct articles of the feed that carried
  it, for fingerprints seen in at least two
- ``{p}:boiler-recent:{name}`` string, the feed's latest once-seen fingerprints, 8 bytes each
- ``{p}:sources``, ``{p}:sources:version``: the sources and their change counter (see store/sources.py)
- the stream itself (``articles`` by default) is not prefixed: it is the contract.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from worker.models import Article
from worker.store.sources import SourceStore

NEAR_MODES = ("mark", "drop", "off")

SEEN_WINDOW_SECONDS = 90 * 24 * 3600

# The dedupe claims, the near-duplicate check and the XADD are one step: a
# retried or re-delivered job finds its own id on the claim ("already") and
# publishes nothing, so no crash between them can publish twice or lose the
# article; and two workers publishing copies of one story at the same moment are
# serialised by Redis, so the second always sees the first's bands.
#
# Near-duplicates (see worker/minhash.py). The LSH band index is kept compact
# (issue 7: under 2 KB of Redis per article): 18-byte records, the band's 6-byte
# probe then the article's 12-byte id, added to strings and scanned here (a string
# key per band cost ~125 bytes; a record costs 18 plus its string's share). A
# record goes to the string of its period and the first hex digit of its digest
# (16 strings) until that string holds 4 KB, then to the one of its first byte
# (256), then of its first two bytes (65,536): a small index stays in few keys, a
# large one in many short strings, and a lookup reads at most 8 KB plus one short
# string per band and period. A period is a quarter of the window; a lookup reads
# the periods the window covers, so an article is found for at least the window
# (at most a period longer), and each string expires a period after its last record.
# The article's own signature key holds "<cluster id>|<packed MinHash>". Candidates
# from the bands only count when their stored signature agrees with ours on at
# least ARGV[10] values. The band and signature keys are named in the script from
# ARGV prefixes and the ids found, so this script is for a single Redis server or
# a replicated one, not Redis Cluster.
#
# The article JSON arrives without its closing brace and without
# duplicate_of/cluster, which only this script can decide; it appends them.
#
# A published article's paragraph fingerprints are counted for its feed's learned
# boilerplate here too (see Store.boilerplate_counts for how they are read): only
# published articles teach it, so a retry ("already") or an exact copy counts nothing.
# KEYS: stream, counters, claim keys (URL claim first; ARGV[7] of them), own signature key (when indexed),
#       the feed's boilerplate counts hash and recent-fingerprints string (always the last two)
# ARGV: 1 article id, 2 article json head, 3 claim ttl seconds, 4 maxlen (0: no trim), 5 url, 6 feed,
#       7 number of claim keys, 8 near mode (off|mark|drop), 9 packed signature ('' for none),
#       10 agreeing values needed, 11 near window seconds, 12 signature key prefix, 13 band key prefix,
#       14 current period number, 15 periods to look back, 16 period seconds, 17 the id as 12 bytes,
#       18 boilerplate fingerprints (8 bytes each, '' for none), 19 their ttl seconds, 20 counts cap,
#       21 recent bytes kept, 22.. band digests (7 bytes each: the first two name the buckets, the last six
#       are the probe)
_PUBLISH_LUA = """
-- Where (from `start` on) `needle` begins one of the `width`-byte records of `records`, or nil.
local function find_record(records, needle, start, width)
  while true do
    local at = string.find(records, needle, start, true)
    if not at or (at - 1) % width == 0 then
      return at
    end
    start = at + 1
  end
end

-- Count a published article's paragraph fingerprints (8 bytes each, concatenated) for its feed: a
-- fingerprint already counted goes up by one, one among the recent once-seen records is counted 2, any
-- other is appended to those records (the latest `recent_bytes` of them are kept).
local function learn_boilerplate(counts_key, recent_key, fingerprints, ttl, cap, recent_bytes)
  local recent = redis.call('GET', recent_key) or ''
  local fresh = {}
  for at = 1, string.len(fingerprints), 8 do
    local fp = string.sub(fingerprints, at, at + 7)
    if redis.call('HEXISTS', counts_key, fp) == 1 then
      redis.call('HINCRBY', counts_key, fp, 1)
    elseif find_record(recent, fp, 1, 8) then
      redis.call('HSET', counts_key, fp, 2)
    else
      fresh[#fresh + 1] = fp
    end
  end
  if #fresh > 0 then
    recent = recent .. table.concat(fresh)
    if string.len(recent) > recent_bytes then
      recent = string.sub(recent, string.len(recent) - recent_bytes + 1)
    end
  end
  redis.call('SET', recent_key, recent, 'EX', ttl)
  if redis.call('HLEN', counts_key) > cap then
    local all = redis.call('HGETALL', counts_key)
    for j = 1, #all, 2 do
      if tonumber(all[j + 1]) <= 2 then
        redis.call('HDEL', counts_key, all[j])
      end
    end
  end
  if redis.call('EXISTS', counts_key) == 1 then
    redis.call('EXPIRE', counts_key, ttl)
  end
end

local nclaims = tonumber(ARGV[7])
for i = 3, 2 + nclaims do
  local owner = redis.call('GET', KEYS[i])
  if owner then
    if owner == ARGV[1] then
      return {'already', owner}
    end
    redis.call('HINCRBY', KEYS[2], 'duplicates_exact', 1)
    return {'duplicate', owner}
  end
end
local mode = ARGV[8]
local sig = ARGV[9]
local sigkey = 3 + nclaims
local cluster = ARGV[1]
local near = false
if mode ~= 'off' and sig ~= '' then
  local need = tonumber(ARGV[10])
  local values = string.len(sig) / 2
  local best = -1
  local tried = {}
  local function consider(cand)
    tried[cand] = true
    local hex = string.gsub(cand, '.', function(c) return string.format('%02x', string.byte(c)) end)
    local stored = redis.call('GET', ARGV[12] .. hex)
    if not stored then
      return
    end
    local bar = string.find(stored, '|', 1, true)
    local other = string.sub(stored, bar + 1)
    if string.len(other) ~= string.len(sig) then
      return
    end
    local same = 0
    for j = 1, 2 * values, 2 do
      if string.sub(sig, j, j + 1) == string.sub(other, j, j + 1) then
        same = same + 1
      end
    end
    if same >= need and same > best then
      best = same
      cluster = string.sub(stored, 1, bar - 1)
      near = true
    end
  end
  local function scan(records, probe)
    local at = find_record(records, probe, 1, 18)
    while at do
      local cand = string.sub(records, at + 6, at + 17)
      if cand ~= ARGV[17] and not tried[cand] then
        consider(cand)
      end
      at = find_record(records, probe, at + 18, 18)
    end
  end
  local period = tonumber(ARGV[14])
  -- bucket strings read so far ('' when absent): 20 bands share 16 first-level buckets, and
  -- the current period's are read again to add the new records
  local strings = {}
  local function bucket(key)
    if strings[key] == nil then
      strings[key] = redis.call('GET', key) or ''
    end
    return strings[key]
  end
  local buckets = {}
  for b = 22, #ARGV do
    local hex = string.format('%02x%02x', string.byte(ARGV[b], 1), string.byte(ARGV[b], 2))
    buckets[b] = {string.sub(hex, 1, 1), string.sub(hex, 1, 2), hex}
    local probe = string.sub(ARGV[b], 2)
    for p = period - tonumber(ARGV[15]), period do
      for level = 1, 3 do
        local records = bucket(ARGV[13] .. p .. ':' .. buckets[b][level])
        scan(records, probe)
        if string.len(records) < 4096 then  -- only a full bucket overflows to the next level
          break
        end
      end
    end
  end
  local ttl = tonumber(ARGV[11]) + tonumber(ARGV[16])
  for b = 22, #ARGV do
    local key
    for level = 1, 3 do
      key = ARGV[13] .. period .. ':' .. buckets[b][level]
      if level == 3 or string.len(bucket(key)) < 4096 then
        break
      end
    end
    -- SET of the whole, not APPEND: APPEND's room for growth (up to the string's size again) is memory too
    strings[key] = bucket(key) .. string.sub(ARGV[b], 2) .. ARGV[17]
    redis.call('SET', key, strings[key], 'EX', ttl)
  end
  redis.call('SET', KEYS[sigkey], cluster .. '|' .. sig, 'EX', ARGV[11])
end
if near and mode == 'drop' then
  for i = 3, 2 + nclaims do
    redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[3])
  end
  redis.call('HINCRBY', KEYS[2], 'duplicates_near_dropped', 1)
  return {'near_dropped', cluster}
end
local doc
if near then
  doc = ARGV[2] .. ',"duplicate_of":"' .. cluster .. '","cluster":"' .. cluster .. '"}'
else
  doc = ARGV[2] .. ',"duplicate_of":null,"cluster":"' .. cluster .. '"}'
end
local sid
if tonumber(ARGV[4]) > 0 then
  sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*',
                   'article', doc, 'id', ARGV[1], 'url', ARGV[5], 'feed', ARGV[6])
else
  sid = redis.call('XADD', KEYS[1], '*',
                   'article', doc, 'id', ARGV[1], 'url', ARGV[5], 'feed', ARGV[6])
end
for i = 3, 2 + nclaims do
  redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[3])
end
redis.call('HINCRBY', KEYS[2], 'published', 1)
if ARGV[18] ~= '' then
  learn_boilerplate(KEYS[#KEYS - 1], KEYS[#KEYS], ARGV[18], ARGV[19], tonumber(ARGV[20]), tonumber(ARGV[21]))
end
if near then
  redis.call('HINCRBY', KEYS[2], 'duplicates_near', 1)
  return {'published', sid, cluster}
end
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
# Also refuses while the host's "not before" (KEYS[2]) lies ahead, returning it: one
# round trip answers both "may we?" and "is there room?" (replies are strings: Lua
# numbers come back truncated to integers).
_ACQUIRE_SLOT_LUA = """
local not_before = tonumber(redis.call('GET', KEYS[2]) or '0')
if not_before > tonumber(ARGV[3]) then
  return tostring(not_before)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) + 60)
  return '1'
end
return '0'
"""
# Learned boilerplate (see worker/boilerplate.py and the publish script). Memory (issue
# 7): nearly every fingerprint is story text that never comes back, so those are not
# hash fields (~70 bytes each) but 8-byte records in one string per feed, its latest
# BOILERPLATE_RECENT once-seen fingerprints; only a fingerprint seen again moves to the
# counts hash. Boilerplate recurs in most of a feed's articles, so a window of a few
# thousand paragraphs finds it; a line repeated more rarely than that is forgotten and
# stays in the text. Past BOILERPLATE_CAP fields, the ones seen in only two articles go.
BOILERPLATE_TTL = 30 * 24 * 3600
BOILERPLATE_CAP = 5_000  # repeated fingerprints per feed before those seen in only two articles are forgotten
BOILERPLATE_RECENT = 4_096  # once-seen fingerprints remembered per feed (8 bytes each)


@dataclass(frozen=True)
class PublishResult:
    """What the atomic publish did.

    ``published`` (``duplicate_of`` set when it went out marked as a near-copy),
    ``already`` (a retry), ``duplicate`` (exact: not published) or
    ``near_dropped`` (a near-copy under mode ``drop``: not published).
    """

    outcome: str
    article_id: str
    stream_id: str | None = None  # set when published
    duplicate_of: str | None = None  # the earlier article's id (exact) or the cluster's first article (near)
    cluster: str | None = None  # near-duplicate cluster id, when published or near_dropped


@dataclass(frozen=True)
class PublishRequest:
    """One article for :meth:`Store.publish_many`, with the claims that make it a duplicate."""

    article: Article
    url_keys: Sequence[str]
    text_key: str | None
    near: NearKey | None = None
    message_key: str | None = None
    # the article's paragraph fingerprints (boilerplate.fingerprints), counted for its feed if it is published
    boilerplate: Sequence[str] = ()


@dataclass(frozen=True)
class NearKey:
    """What the near-duplicate index needs of one article: its packed MinHash and band digests."""

    packed: bytes
    bands: Sequence[bytes]  # 7 bytes each (see minhash.Signature.bands)
    min_agree: int  # values of the stored signature that must agree for a candidate to count


def index_id(article_id: str) -> bytes:
    """The 12 bytes that stand for an article in the near-duplicate index: its id's own bytes when it is
    24 hex digits (as :func:`dedupe.article_id` makes them), else a hash of it."""
    try:
        raw = bytes.fromhex(article_id)
    except ValueError:
        raw = b""
    return raw if len(raw) == 12 else hashlib.blake2b(article_id.encode("utf-8"), digest_size=12).digest()


def article_json_head(article: Article) -> str:
    """The article's JSON without ``duplicate_of``/``cluster`` and the closing brace (the publish script adds them)."""
    doc = {k: v for k, v in asdict(article).items() if k not in ("duplicate_of", "cluster")}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))[:-1]


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


# Upper bounds (seconds) of the publish-delay histogram: a minute to a week.
DELAY_BUCKETS: tuple[float, ...] = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
                                    2 * 86400, 7 * 86400)


def connect_quick(url: str) -> redis.Redis:
    """A client that fails fast instead of retrying: for health checks, which must answer promptly."""
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def _compact(key: str) -> bytes:
    """A hex digest key as its bytes (half the memory as a set member); any other key as UTF-8."""
    try:
        return bytes.fromhex(key)
    except ValueError:
        return key.encode("utf-8")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Store(SourceStore):
    """Feed state, deduplication claims, the stream and counters, over one Redis client."""

    def __init__(self, client: redis.Redis, *, stream: str = "articles", prefix: str = "feedstream",
                 claim_ttl: int = 90 * 24 * 3600, stream_maxlen: int = 100_000,
                 near_window: int = 30 * 24 * 3600, near_mode: str = "mark") -> None:
        if near_mode not in NEAR_MODES:
            raise ValueError(f"near_mode must be one of {NEAR_MODES}, not {near_mode!r}")
        self.redis = client
        self.near_window = near_window
        self.near_mode = near_mode
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
        pipe = self.redis.pipeline()
        self._queue_poll_status(pipe, name, fields, error=error, clear=clear)
        pipe.execute()

    def _queue_poll_status(self, pipe: Any, name: str, fields: Mapping[str, str | int | float], *,
                           error: bool, clear: Iterable[str]) -> None:
        key = self.feed_key(name)
        pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
        if error:
            pipe.hincrby(key, "consecutive_errors", 1)
        else:
            pipe.hset(key, "consecutive_errors", 0)
            pipe.hdel(key, "last_error")
        for name_ in clear:
            pipe.hdel(key, name_)
        pipe.hincrby(key, "polls", 1)

    def finish_poll(self, name: str, fields: Mapping[str, str | int | float], *, error: bool,
                    clear: Iterable[str] = (), next_poll: float, counts: Mapping[str, int],
                    http: tuple[str, int | str] | None = None) -> None:
        """:meth:`record_poll`, :meth:`schedule`, :meth:`count` and :meth:`count_http` in one round trip.

        A poll of an unchanged feed is a handful of Redis writes; sent one by one they
        cost more than the conditional GET itself.
        """
        pipe = self.redis.pipeline(transaction=False)
        self._queue_poll_status(pipe, name, fields, error=error, clear=clear)
        pipe.zadd(self.due_key, {name: next_poll}, xx=True)
        for counter, amount in counts.items():
            if amount:
                pipe.hincrby(self.counters_key, counter, amount)
        if http is not None:
            pipe.hincrby(self._key("http"), f"{http[0]}:{http[1]}", 1)
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

    def acquire_host_slot(self, host: str, token: str, limit: int, lease: float, now: float) -> bool | float:
        """Take one of ``limit`` request slots for ``host``, held until released or ``lease`` passes.

        True when taken, False when all are in use, or the host's "not before" epoch
        when it asked everyone to wait until later than ``now`` (no slot is taken then).
        """
        reply = _text(self._acquire_slot(keys=[self._host_key(host, "inflight"), self._host_key(host, "not_before")],
                                         args=[token, limit, repr(now), repr(lease)]))
        if reply in ("1", "0"):
            return reply == "1"
        return float(reply)

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
        scores = self.redis.zmscore(self._key("seen", feed), [_compact(key) for key in guid_keys])
        return [score is None for score in scores]

    def mark_seen(self, feed: str, guid_keys: Sequence[str], now: float) -> None:
        """Remember GUIDs the feed lists now; forget those it has not listed for 90 days."""
        key = self._key("seen", feed)
        pipe = self.redis.pipeline()
        if guid_keys:
            # whole seconds: a listpack stores them as a small integer, not a 17-character float
            pipe.zadd(key, dict.fromkeys((_compact(guid) for guid in guid_keys), int(now)))
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

    def publish(self, article: Article, *, url_keys: Sequence[str], text_key: str | None,
                near: NearKey | None = None, message_key: str | None = None,
                boilerplate: Sequence[str] = ()) -> PublishResult:
        """Claim the article's URLs (and text, and a newsletter's Message-ID), check it for near-copies and XADD it.

        One atomic step.
        With ``near`` and a near mode other than ``off``, an article whose
        signature agrees with a stored one (found through a shared band) is
        published with ``duplicate_of``/``cluster`` set to that cluster's first
        article (``mark``) or not published (``drop``); either way its own
        bands and signature are indexed for ``near_window`` seconds. A published
        article's ``boilerplate`` fingerprints are counted for its feed in the same step.
        """
        request = PublishRequest(article, url_keys, text_key, near, message_key, boilerplate)
        keys, args = self._publish_call(request)
        return self._publish_result(article, self._publish(keys=keys, args=args))

    def publish_many(self, requests: Sequence[PublishRequest]) -> list[PublishResult]:
        """:meth:`publish` for each request, in order, in one round trip (each one still its own atomic step)."""
        if not requests:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for request in requests:
            keys, args = self._publish_call(request)
            self._publish(keys=keys, args=args, client=pipe)
        replies = pipe.execute()
        return [self._publish_result(request.article, reply)
                for request, reply in zip(requests, replies, strict=True)]

    def _publish_call(self, request: PublishRequest) -> tuple[list[str], list[Any]]:
        article = request.article
        claims = [self._key("claim", "url", key) for key in request.url_keys]
        if request.message_key:
            claims.append(self._key("claim", "mid", request.message_key))
        if request.text_key:
            claims.append(self._key("claim", "text", request.text_key))
        near_keys: list[str] = []
        packed, need, bands = b"", 0, []
        near = request.near
        raw_id = index_id(article.id)
        if near is not None and self.near_mode != "off":
            near_keys = [self._key("nd", "sig", raw_id.hex())]
            packed, need, bands = near.packed, near.min_agree, list(near.bands)
        period_seconds = max(1, self.near_window // 4)
        keys = [self.stream, self.counters_key, *claims, *near_keys]
        args = [article.id, article_json_head(article), self.claim_ttl, self.stream_maxlen, article.url,
                article.feed, len(claims), self.near_mode, packed, need, self.near_window,
                self._key("nd", "sig", ""), self._key("nd", "b", ""), int(time.time() // period_seconds),
                -(-self.near_window // period_seconds), period_seconds, raw_id,
                b"".join(bytes.fromhex(fp) for fp in request.boilerplate), BOILERPLATE_TTL, BOILERPLATE_CAP,
                8 * BOILERPLATE_RECENT, *bands]
        keys += [self._key("boiler", article.feed), self._key("boiler-recent", article.feed)]
        return keys, args

    @staticmethod
    def _publish_result(article: Article, reply: Sequence[Any]) -> PublishResult:
        outcome, value = _text(reply[0]), _text(reply[1])
        if outcome == "published":
            cluster = _text(reply[2]) if len(reply) > 2 else article.id
            return PublishResult(outcome, article.id, stream_id=value,
                                 duplicate_of=cluster if len(reply) > 2 else None, cluster=cluster)
        if outcome == "already":
            return PublishResult(outcome, article.id)
        if outcome == "near_dropped":
            return PublishResult(outcome, article.id, duplicate_of=value, cluster=value)
        return PublishResult(outcome, article.id, duplicate_of=value)

    # -- learned boilerplate ---------------------------------------------------
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
                pipe.hmget(self._key("boiler", feed), [bytes.fromhex(fp) for fp in fingerprints])
                pipe.get(self._key("boiler-recent", feed))
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

    # -- counters -------------------------------------------------------------
    def count(self, counts: Mapping[str, int], *, http: Mapping[tuple[str, int | str], int] | None = None,
              delays: Iterable[float] = ()) -> None:
        """Add to the counters, and optionally to the HTTP status counts and the publish-delay
        histogram, in one round trip (an extract job reports its whole batch at once)."""
        pipe = self.redis.pipeline()
        for name, amount in counts.items():
            if amount:
                pipe.hincrby(self.counters_key, name, amount)
        for (kind, status), amount in (http or {}).items():
            pipe.hincrby(self._key("http"), f"{kind}:{status}", amount)
        for seconds in delays:
            self._queue_delay(pipe, seconds)
        pipe.execute()

    def counters(self) -> dict[str, int]:
        return {_text(k): int(v) for k, v in self.redis.hgetall(self.counters_key).items()}

    # -- operational figures (metrics) ------------------------------------------
    def count_http(self, kind: str, status: int | str) -> None:
        """One HTTP response (or ``error`` when none came) for a ``feed`` or ``page`` fetch."""
        self.redis.hincrby(self._key("http"), f"{kind}:{status}", 1)

    def http_counts(self) -> dict[tuple[str, str], int]:
        counts = {}
        for field, value in self.redis.hgetall(self._key("http")).items():
            kind, _, status = _text(field).partition(":")
            counts[(kind, status)] = int(value)
        return counts

    def observe_delay(self, seconds: float) -> None:
        """Add one article's delay from its ``published`` time to its XADD to the histogram.

        Buckets are stored non-cumulative (one HINCRBY each); the reader sums them up.
        """
        pipe = self.redis.pipeline(transaction=True)
        self._queue_delay(pipe, seconds)
        pipe.execute()

    def _queue_delay(self, pipe: Any, seconds: float) -> None:
        seconds = max(seconds, 0.0)
        bucket = next((f"{b:g}" for b in DELAY_BUCKETS if seconds <= b), "+Inf")
        key = self._key("delay")
        pipe.hincrby(key, bucket, 1)
        pipe.hincrby(key, "count", 1)
        pipe.hincrbyfloat(key, "sum", seconds)

    def delay_histogram(self) -> tuple[list[tuple[str, int]], float]:
        """(cumulative ``(le, count)`` pairs ending with ``+Inf``, sum of seconds)."""
        raw = {_text(k): _text(v) for k, v in self.redis.hgetall(self._key("delay")).items()}
        running, buckets = 0, []
        for bound in [f"{b:g}" for b in DELAY_BUCKETS] + ["+Inf"]:
            running += int(raw.get(bound, 0))
            buckets.append((bound, running))
        return buckets, float(raw.get("sum", 0.0))

    def stream_groups(self) -> list[dict[str, Any]]:
        """Consumer groups on the stream: name, consumers, pending (read, not acked) entries."""
        try:
            groups = self.redis.xinfo_groups(self.stream)
        except redis.ResponseError:  # no stream yet
            return []
        return [{"name": _text(g["name"]), "consumers": int(g["consumers"]), "pending": int(g["pending"])}
                for g in groups]

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
