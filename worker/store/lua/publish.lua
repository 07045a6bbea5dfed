-- Publish one article exactly once: its dedupe claims, the near-duplicate check and
-- the XADD are one atomic step. A retried or re-delivered job finds its own id on a
-- claim ("already") and publishes nothing, so no crash between the steps can publish
-- twice or lose the article; two workers publishing copies of one story at the same
-- moment are serialised by Redis, so the second always sees the first's bands.
--
-- KEYS[1]        the stream
-- KEYS[2]        the counters hash
-- KEYS[3 .. 5]   the outbox: its zset of check times, its job hash, its entry hash (see store/outbox.py)
-- KEYS[6 ..]     the claim keys, the URL claim first (claim_count of them)
-- next           the article's own signature key (only when near_mode ~= 'off' and signature ~= '')
-- KEYS[#KEYS-1]  the feed's boilerplate counts hash
-- KEYS[#KEYS]    the feed's recent once-seen fingerprints string
-- ARGV[1 .. 22]  named in the `unpack` below, in the order of worker/store/publish.py's PublishArgs
-- ARGV[23 ..]    band digests, 7 bytes each: the first two name the buckets, the last six are the probe
--
-- Whatever the verdict, the entry's outbox record (outbox_token, '' for none: a mail) is settled in
-- the same step: an entry is pending until this script has decided it, and not a moment longer.
--
-- Returns {'already', id} | {'duplicate', owner id} | {'near_dropped', cluster id}
--       | {'published', stream id} | {'published', stream id, cluster id} (a near-copy, marked)
--
-- The near-duplicate index (see worker/dedupe/minhash.py) is kept compact: 18-byte
-- records, a band's 6-byte probe then the article's 12-byte id, added to strings and
-- scanned here. A record goes to the string of its period and the first hex digit of
-- its digest (16 strings) until that string holds 4 KB, then to the one of its first
-- byte (256), then of its first two bytes (65,536): a small index stays in few keys, a
-- large one in many short strings, and a lookup reads at most 8 KB plus one short
-- string per band and period. A period is a quarter of the window; a lookup reads the
-- periods the window covers, so an article is found for at least the window (at most a
-- period longer), and each string expires a period after its last record. The
-- article's own signature key holds "<cluster id>|<packed MinHash>". Candidates from
-- the bands only count when their stored signature agrees with ours on at least
-- min_agree values. Band and signature keys are named here from prefixes and the ids
-- found, so this script is for a single (or replicated) Redis server, not Cluster.
--
-- The article JSON arrives without its closing brace and without duplicate_of/cluster,
-- which only this script can decide; it appends them.
--
-- A published article's paragraph fingerprints are counted for its feed's learned
-- boilerplate here too: only published articles teach it, so a retry ("already") or an
-- exact copy counts nothing.

local article_id, article_head, claim_ttl, stream_maxlen, url, feed, claim_count, near_mode, signature,
  min_agree, near_window, signature_prefix, band_prefix, period, periods_back, period_seconds, index_id,
  boilerplate, boilerplate_ttl, boilerplate_cap, recent_bytes, outbox_token = unpack(ARGV, 1, 22)
local FIRST_BAND = 23
local RECORD = 18  -- bytes of a band record: 6-byte probe, 12-byte article id
local FULL = 4096  -- a bucket string this long overflows to the next level
local STREAM, COUNTERS = KEYS[1], KEYS[2]
local OUTBOX, OUTBOX_JOB, OUTBOX_ENTRY = KEYS[3], KEYS[4], KEYS[5]
local FIRST_CLAIM, LAST_CLAIM = 6, 5 + tonumber(claim_count)

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

-- {'already', id} when a claim is ours (a retry), {'duplicate', owner} when another
-- article holds one, nil when the article is new.
local function check_claims()
  for i = FIRST_CLAIM, LAST_CLAIM do
    local owner = redis.call('GET', KEYS[i])
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
  for i = FIRST_CLAIM, LAST_CLAIM do
    redis.call('SET', KEYS[i], article_id, 'EX', claim_ttl)
  end
end

-- Bucket strings read so far ('' when absent): 20 bands share 16 first-level buckets,
-- and the current period's are read again to add the new records.
local strings = {}
local function bucket(key)
  if strings[key] == nil then
    strings[key] = redis.call('GET', key) or ''
  end
  return strings[key]
end

-- The three bucket names of band digest ARGV[b]: its first 1, 2 and 4 hex digits.
local function bucket_names(b)
  local hex = string.format('%02x%02x', string.byte(ARGV[b], 1), string.byte(ARGV[b], 2))
  return {string.sub(hex, 1, 1), string.sub(hex, 1, 2), hex}
end

-- The cluster of the stored article whose signature agrees most with ours (at least
-- min_agree values), found through a shared band in the window; nil when none.
local function find_near()
  local need = tonumber(min_agree)
  local values = string.len(signature) / 2
  local best, cluster = -1, nil
  local tried = {}
  local function consider(cand)
    tried[cand] = true
    local hex = string.gsub(cand, '.', function(c) return string.format('%02x', string.byte(c)) end)
    local stored = redis.call('GET', signature_prefix .. hex)
    if not stored then
      return
    end
    local bar = string.find(stored, '|', 1, true)
    local other = string.sub(stored, bar + 1)
    if string.len(other) ~= string.len(signature) then
      return
    end
    local same = 0
    for j = 1, 2 * values, 2 do
      if string.sub(signature, j, j + 1) == string.sub(other, j, j + 1) then
        same = same + 1
      end
    end
    if same >= need and same > best then
      best = same
      cluster = string.sub(stored, 1, bar - 1)
    end
  end
  local function scan(records, probe)
    local at = find_record(records, probe, 1, RECORD)
    while at do
      local cand = string.sub(records, at + 6, at + 17)
      if cand ~= index_id and not tried[cand] then
        consider(cand)
      end
      at = find_record(records, probe, at + RECORD, RECORD)
    end
  end
  local now = tonumber(period)
  for b = FIRST_BAND, #ARGV do
    local names = bucket_names(b)
    local probe = string.sub(ARGV[b], 2)
    for p = now - tonumber(periods_back), now do
      for level = 1, 3 do
        local records = bucket(band_prefix .. p .. ':' .. names[level])
        scan(records, probe)
        if string.len(records) < FULL then  -- only a full bucket overflows to the next level
          break
        end
      end
    end
  end
  return cluster
end

-- Add the article's band records to the current period's buckets and store its
-- signature under its cluster (its own id unless it is a near-copy).
local function index_bands(signature_key, cluster)
  local ttl = tonumber(near_window) + tonumber(period_seconds)
  for b = FIRST_BAND, #ARGV do
    local names = bucket_names(b)
    local key
    for level = 1, 3 do
      key = band_prefix .. period .. ':' .. names[level]
      if level == 3 or string.len(bucket(key)) < FULL then
        break
      end
    end
    -- SET of the whole, not APPEND: APPEND's room for growth (up to the string's size again) is memory too
    strings[key] = bucket(key) .. string.sub(ARGV[b], 2) .. index_id
    redis.call('SET', key, strings[key], 'EX', ttl)
  end
  redis.call('SET', signature_key, cluster .. '|' .. signature, 'EX', near_window)
end

-- Count a published article's paragraph fingerprints (8 bytes each, concatenated) for its feed: a
-- fingerprint already counted goes up by one, one among the recent once-seen records is counted 2, any
-- other is appended to those records (the latest `recent_bytes` of them are kept).
local function learn_boilerplate(counts_key, recent_key, fingerprints, ttl, cap, keep_bytes)
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
    if string.len(recent) > keep_bytes then
      recent = string.sub(recent, string.len(recent) - keep_bytes + 1)
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

-- XADD the article with its duplicate_of/cluster appended; returns the stream id.
local function append_to_stream(cluster, near)
  local duplicate_of = near and ('"' .. cluster .. '"') or 'null'
  local doc = article_head .. ',"duplicate_of":' .. duplicate_of .. ',"cluster":"' .. cluster .. '"}'
  if tonumber(stream_maxlen) > 0 then
    return redis.call('XADD', STREAM, 'MAXLEN', '~', stream_maxlen, '*',
                      'article', doc, 'id', article_id, 'url', url, 'feed', feed)
  end
  return redis.call('XADD', STREAM, '*', 'article', doc, 'id', article_id, 'url', url, 'feed', feed)
end

local refused = check_claims()
if refused then
  settle()
  return refused
end
local cluster, near = article_id, false
if near_mode ~= 'off' and signature ~= '' then
  local found = find_near()
  if found then
    cluster, near = found, true
  end
  index_bands(KEYS[LAST_CLAIM + 1], cluster)
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
  learn_boilerplate(KEYS[#KEYS - 1], KEYS[#KEYS], boilerplate, boilerplate_ttl, tonumber(boilerplate_cap),
                    tonumber(recent_bytes))
end
if near then
  redis.call('HINCRBY', COUNTERS, 'duplicates_near', 1)
  return {'published', stream_id, cluster}
end
return {'published', stream_id}
