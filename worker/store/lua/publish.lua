-- Publish one article exactly once: its dedupe claims, the near-duplicate check and
-- the XADD are one atomic step. A retried or re-delivered job finds its own id on a
-- claim ("already") and publishes nothing, so no crash between the steps can publish
-- twice or lose the article; two workers publishing copies of one story at the same
-- moment are serialised by Redis, so the second always sees the first's bands.
--
-- KEYS[1]        the stream
-- KEYS[2]        the counters hash
-- KEYS[3]        the feeds-out marker: the first stream id published with feeds-out indexes
-- KEYS[4 .. 6]   the outbox: its zset of check times, its job hash, its entry hash (see store/outbox.py)
-- KEYS[7 ..]     the claims' keys of the old form (a string per claim), read until they expire
--                (claim_count of them, the URL claims first, in the order of claim_records)
-- next           the article's own signature key (only when near_mode ~= 'off' and signature ~= '')
-- next two       the feed's boilerplate keys of the old form (counts hash, once-seen string), read only
-- the rest       the feeds-out indexes the article goes to (all, its feed, each of its tags)
-- ARGV[1 .. 33]  named in the `unpack` below, in the order of worker/store/publish.py's PublishArgs
-- ARGV[34 ..]    band digests, 7 bytes each: the first two name the buckets, the last six are the probe
--
-- Whatever the verdict, the entry's outbox record (outbox_token, '' for none: a mail, or a publishing
-- Redis of its own, where the outbox is not: then the caller settles it right after) is settled in the
-- same step: an entry is pending until this script has decided it, and not a moment longer.
--
-- Returns {'already', id} | {'duplicate', owner id} | {'near_dropped', cluster id}
--       | {'published', stream id} | {'published', stream id, cluster id} (a near-copy, marked)
--
-- Every write here is small and bounded (issue 18): records are APPENDed (or HSET) to
-- structures of the current period, which expire as a whole, so what a publish adds to
-- the AOF and the replication stream does not grow with the index.
--
-- Claims: a record per claim, field <kind letter><12-byte digest> -> article id, in a
-- hash of the claim period (a quarter of the claim TTL) and the digest's first 3 hex
-- digits; once that hash holds CLAIM_FULL fields (kept under Redis's default
-- hash-max-ziplist-entries, so every hash stays a compact ziplist), in the one of its
-- first 4, then 5 digits. A lookup reads the periods the TTL covers.
--
-- The near-duplicate index (see worker/dedupe/minhash.py) is kept compact: 18-byte
-- records, a band's 6-byte probe then the article's 12-byte id, in strings. A record goes
-- to the string of its period and the first hex digit of its digest (16 strings) until
-- that string holds FULL bytes, then to the one of its first byte (256), then of its
-- first two bytes (65,536), whose strings continue in numbered chunks (":1", ":2", ...)
-- once full. Records are APPENDed; a string that reaches FULL is set once more, whole, to
-- drop the room for growth APPEND leaves, and is never written again. A small index stays
-- in few keys, a large one in many short strings. A period is a quarter of the window; a
-- lookup reads the periods the window covers, so an article is found for at least the
-- window (at most a period longer); each string expires a window after its period ends.
-- The article's own signature key holds "<cluster id>|<packed MinHash>". Candidates from
-- the bands only count when their stored signature agrees with ours on at least
-- min_agree values. Band, claim and signature keys are named here from prefixes and the
-- digests or ids found, so this script is for a single (or replicated) Redis server, not
-- Cluster (docs/capacity.md: sharding the publishing side).
--
-- The article JSON arrives without its closing brace and without duplicate_of/cluster,
-- which only this script can decide; it appends them.
--
-- A published article's paragraph fingerprints are counted for its feed's learned
-- boilerplate here too: only published articles teach it, so a retry ("already") or an
-- exact copy counts nothing. They are kept per boilerplate period (a quarter of the
-- boilerplate TTL), so a feed remembers only what it published in the last TTL.

local article_id, article_head, claim_ttl, stream_maxlen, url, feed, claim_count, near_mode, signature,
  min_agree, near_window, signature_prefix, band_prefix, period, periods_back, period_seconds, index_id,
  boilerplate, boilerplate_ttl, boilerplate_cap, recent_bytes, claim_records, claim_prefix, claim_period,
  claim_periods_back, claim_period_seconds, boiler_seen_prefix, boiler_count_prefix, boiler_period,
  boiler_periods_back, boiler_period_seconds, index_ttl, outbox_token = unpack(ARGV, 1, 33)
local FIRST_BAND = 34
local RECORD = 18  -- bytes of a band record: 6-byte probe, 12-byte article id
local FULL = 4096  -- a bucket string this long overflows to the next level (or chunk)
local CLAIM = 13  -- bytes of a claim record in claim_records: kind letter, 12-byte digest
local CLAIM_FULL = 120  -- fields of a claim hash before it overflows to the next level
local FP = 8  -- bytes of a paragraph fingerprint
local STREAM, COUNTERS, OUT_SINCE = KEYS[1], KEYS[2], KEYS[3]
local OUTBOX, OUTBOX_JOB, OUTBOX_ENTRY = KEYS[4], KEYS[5], KEYS[6]
local FIRST_CLAIM, LAST_CLAIM = 7, 6 + tonumber(claim_count)
local near_on = near_mode ~= 'off' and signature ~= ''
local SIGNATURE_KEY = near_on and KEYS[LAST_CLAIM + 1] or nil
local OLD_BOILER = LAST_CLAIM + (near_on and 2 or 1)  -- the old counts hash; the once-seen string follows
local FIRST_OUT = OLD_BOILER + 2

local function hex_of(raw)
  return (string.gsub(raw, '.', function(c) return string.format('%02x', string.byte(c)) end))
end

-- A key written for the first time in its period gets the period's expiry (an absolute time).
local function expire_new(key, at)
  if redis.call('TTL', key) == -1 then
    redis.call('EXPIREAT', key, at)
  end
end

-- The entry is decided: no longer pending in the outbox.
local function settle()
  if outbox_token ~= '' then
    redis.call('ZREM', OUTBOX, outbox_token)
    redis.call('HDEL', OUTBOX_JOB, outbox_token)
    redis.call('HDEL', OUTBOX_ENTRY, outbox_token)
  end
end

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

-- Claims -------------------------------------------------------------------------------

-- The claim hashes of claim record i in `p`, level by level (first 3, 4, 5 hex digits of its digest).
local function claim_hashes(i, p)
  local hex = hex_of(string.sub(claim_records, (i - 1) * CLAIM + 2, (i - 1) * CLAIM + 4))
  local base = claim_prefix .. p .. ':'
  return {base .. string.sub(hex, 1, 3), base .. string.sub(hex, 1, 4), base .. string.sub(hex, 1, 5)}
end

local function claim_field(i)
  return string.sub(claim_records, (i - 1) * CLAIM + 1, i * CLAIM)
end

-- The article holding claim i, or nil: the old-form key first, then the periods the TTL covers.
local function claim_owner(i)
  local owner = redis.call('GET', KEYS[FIRST_CLAIM + i - 1])
  if owner then
    return owner
  end
  local now = tonumber(claim_period)
  for p = now - tonumber(claim_periods_back), now do
    for _, key in ipairs(claim_hashes(i, p)) do
      owner = redis.call('HGET', key, claim_field(i))
      if owner then
        return owner
      end
      if redis.call('HLEN', key) < CLAIM_FULL then  -- only a full hash overflows to the next level
        break
      end
    end
  end
  return nil
end

-- {'already', id} when a claim is ours (a retry), {'duplicate', owner} when another
-- article holds one, nil when the article is new.
local function check_claims()
  for i = 1, tonumber(claim_count) do
    local owner = claim_owner(i)
    if owner then
      if owner == article_id then
        return {'already', owner}
      end
      redis.call('HINCRBY', COUNTERS, 'duplicates_exact', 1)
      return {'duplicate', owner}
    end
  end
  return nil
end

local function set_claims()
  local expire_at = (tonumber(claim_period) + 1) * tonumber(claim_period_seconds) + tonumber(claim_ttl)
  for i = 1, tonumber(claim_count) do
    local levels = claim_hashes(i, claim_period)
    local key = levels[3]
    for level = 1, 2 do
      if redis.call('HLEN', levels[level]) < CLAIM_FULL then
        key = levels[level]
        break
      end
    end
    redis.call('HSET', key, claim_field(i), article_id)
    expire_new(key, expire_at)
  end
end

-- Near-duplicates ----------------------------------------------------------------------

-- Bucket strings read so far ('' when absent): 20 bands share 16 first-level buckets,
-- and the current period's are read again to add the new records.
local strings = {}
local function bucket(key)
  if strings[key] == nil then
    strings[key] = redis.call('GET', key) or ''
  end
  return strings[key]
end

-- The bucket strings of band digest ARGV[b] in period p, in the order they fill up: the
-- strings of its first 1 and 2 hex digits, then those of its first 4 and their chunks.
-- Calls visit(key) for each until visit returns false, or the string it was given is not full.
local function each_bucket(b, p, visit)
  local hex = string.format('%02x%02x', string.byte(ARGV[b], 1), string.byte(ARGV[b], 2))
  local base = band_prefix .. p .. ':'
  for _, key in ipairs({base .. string.sub(hex, 1, 1), base .. string.sub(hex, 1, 2)}) do
    if visit(key) == false or string.len(bucket(key)) < FULL then
      return
    end
  end
  local chunk = 0
  while true do
    local key = base .. hex .. (chunk > 0 and (':' .. chunk) or '')
    if visit(key) == false or string.len(bucket(key)) < FULL then
      return
    end
    chunk = chunk + 1
  end
end

-- The cluster of the stored article whose signature agrees most with ours (at least
-- min_agree values), found through a shared band in the window; nil when none.
local function find_near()
  local need = tonumber(min_agree)
  local length = string.len(signature)
  -- our bytes once, and each candidate's read as numbers in one call: no 2-byte strings cut for each
  -- of its values (a story syndicated many times has as many candidates)
  local ours = {string.byte(signature, 1, length)}
  local best, cluster = -1, nil
  local tried = {}
  local function consider(cand)
    tried[cand] = true
    local stored = redis.call('GET', signature_prefix .. hex_of(cand))
    if not stored then
      return
    end
    local bar = string.find(stored, '|', 1, true)
    if string.len(stored) - bar ~= length then
      return
    end
    local theirs = {string.byte(stored, bar + 1, bar + length)}
    local same = 0
    for j = 1, length, 2 do  -- a value is two bytes: it agrees when both do
      if ours[j] == theirs[j] and ours[j + 1] == theirs[j + 1] then
        same = same + 1
      end
    end
    if same >= need and same > best then
      best = same
      cluster = string.sub(stored, 1, bar - 1)
    end
  end
  local now = tonumber(period)
  for b = FIRST_BAND, #ARGV do
    local probe = string.sub(ARGV[b], 2)
    for p = now - tonumber(periods_back), now do
      each_bucket(b, p, function(key)
        local records = bucket(key)
        local at = find_record(records, probe, 1, RECORD)
        while at do
          local cand = string.sub(records, at + 6, at + 17)
          if cand ~= index_id and not tried[cand] then
            consider(cand)
          end
          at = find_record(records, probe, at + RECORD, RECORD)
        end
      end)
    end
  end
  return cluster
end

-- Add the article's band records to the current period's buckets and store its
-- signature under its cluster (its own id unless it is a near-copy).
local function index_bands(cluster)
  local expire_at = (tonumber(period) + 1) * tonumber(period_seconds) + tonumber(near_window)
  for b = FIRST_BAND, #ARGV do
    local target
    each_bucket(b, period, function(key)
      target = key
    end)
    local record = string.sub(ARGV[b], 2) .. index_id
    strings[target] = bucket(target) .. record
    local length = redis.call('APPEND', target, record)
    if length == RECORD then
      redis.call('EXPIREAT', target, expire_at)
    elseif length >= FULL then  -- full: written whole once, exactly sized, and never again
      redis.call('SET', target, strings[target], 'KEEPTTL')
    end
  end
  redis.call('SET', SIGNATURE_KEY, cluster .. '|' .. signature, 'EX', near_window)
end

-- Boilerplate --------------------------------------------------------------------------

-- Count a published article's paragraph fingerprints (8 bytes each, concatenated) for its feed: a
-- fingerprint already counted (in any period the TTL covers) goes up by one in the current period,
-- one among the once-seen records of those periods is counted 2, any other is appended to the
-- current period's once-seen records (the latest `recent_bytes` of them are kept per period).
local function learn_boilerplate(fingerprints)
  local now, cap, keep = tonumber(boiler_period), tonumber(boilerplate_cap), tonumber(recent_bytes)
  local counts_key, seen_key = boiler_count_prefix .. now, boiler_seen_prefix .. now
  local counts_keys, seens = {KEYS[OLD_BOILER]}, {redis.call('GET', KEYS[OLD_BOILER + 1]) or ''}
  for p = now - tonumber(boiler_periods_back), now do
    counts_keys[#counts_keys + 1] = boiler_count_prefix .. p
    seens[#seens + 1] = redis.call('GET', boiler_seen_prefix .. p) or ''
  end
  local fps = {}
  for at = 1, string.len(fingerprints), FP do
    fps[#fps + 1] = string.sub(fingerprints, at, at + FP - 1)
  end
  -- which fingerprints any live period (or the old form) has counted: one HMGET per hash
  local counted = {}
  for _, key in ipairs(counts_keys) do
    local values = redis.call('HMGET', key, unpack(fps))
    for i = 1, #fps do
      if values[i] then
        counted[fps[i]] = true
      end
    end
  end
  local function seen_once(fp)
    for _, records in ipairs(seens) do
      if find_record(records, fp, 1, FP) then
        return true
      end
    end
    return false
  end
  local fresh = {}
  for _, fp in ipairs(fps) do
    if counted[fp] then
      redis.call('HINCRBY', counts_key, fp, 1)
    elseif seen_once(fp) then
      redis.call('HINCRBY', counts_key, fp, 2)
    else
      fresh[#fresh + 1] = fp
    end
  end
  local expire_at = now * tonumber(boiler_period_seconds) + tonumber(boilerplate_ttl)
  if #fresh > 0 then
    local length = redis.call('APPEND', seen_key, table.concat(fresh))
    if length > keep then  -- full: keep the latest half (a rare whole write), then append again
      local recent = redis.call('GET', seen_key)
      redis.call('SET', seen_key, string.sub(recent, length - math.floor(keep / 2 / FP) * FP + 1), 'KEEPTTL')
    end
    expire_new(seen_key, expire_at)
  end
  if redis.call('EXISTS', counts_key) == 1 then
    expire_new(counts_key, expire_at)
    if redis.call('HLEN', counts_key) > cap then
      local all = redis.call('HGETALL', counts_key)
      for j = 1, #all, 2 do
        if tonumber(all[j + 1]) <= 2 then
          redis.call('HDEL', counts_key, all[j])
        end
      end
    end
  end
end

-- Stream and feeds out -----------------------------------------------------------------

-- XADD to `key` with id `id` (trimmed like the stream); the fields follow.
local function xadd(call, key, id, ...)
  if tonumber(stream_maxlen) > 0 then
    return call('XADD', key, 'MAXLEN', '~', stream_maxlen, id, ...)
  end
  return call('XADD', key, id, ...)
end

-- XADD the article with its duplicate_of/cluster appended, and its id to each feeds-out index
-- (all, its feed, its tags: a page of a quiet tag reads only its own ids); returns the stream id.
local function append_to_stream(cluster, near)
  local duplicate_of = near and ('"' .. cluster .. '"') or 'null'
  local doc = article_head .. ',"duplicate_of":' .. duplicate_of .. ',"cluster":"' .. cluster .. '"}'
  local stream_id = xadd(redis.call, STREAM, '*', 'article', doc, 'id', article_id, 'url', url, 'feed', feed)
  redis.call('SET', OUT_SINCE, stream_id, 'NX')
  for k = FIRST_OUT, #KEYS do
    -- an index's ids only ever rise with the stream's; pcall keeps a stale index from failing the publish
    xadd(redis.pcall, KEYS[k], stream_id, 'i', article_id)
    redis.call('EXPIRE', KEYS[k], index_ttl)
  end
  return stream_id
end

local refused = check_claims()
if refused then
  settle()
  return refused
end
local cluster, near = article_id, false
if near_on then
  local found = find_near()
  if found then
    cluster, near = found, true
  end
  index_bands(cluster)
end
if near and near_mode == 'drop' then
  set_claims()
  redis.call('HINCRBY', COUNTERS, 'duplicates_near_dropped', 1)
  settle()
  return {'near_dropped', cluster}
end
local stream_id = append_to_stream(cluster, near)
set_claims()
settle()
redis.call('HINCRBY', COUNTERS, 'published', 1)
if boilerplate ~= '' then
  learn_boilerplate(boilerplate)
end
if near then
  redis.call('HINCRBY', COUNTERS, 'duplicates_near', 1)
  return {'published', stream_id, cluster}
end
return {'published', stream_id}
