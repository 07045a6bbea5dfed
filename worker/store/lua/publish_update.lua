-- Publish an article's next version exactly once: the version claim and the XADD are one atomic step.
-- A re-check compares the page against version `expected`; a retried or duplicated re-check that
-- comes after another published expected + 1 finds the version taken and publishes nothing. With an
-- empty document (the page changed, its text did not) only the page's validators are refreshed.
-- The near-duplicate index and the dedupe claims are left alone: an update is not a new story.
--
-- KEYS[1]  the article's version record (hash: v version, t title digest, p paragraph digests,
--          e ETag, m Last-Modified, c last check, ...; see worker/store/updates.py)
-- KEYS[2]  the stream the update goes to (<stream>:updates, or the stream itself when inline)
-- KEYS[3]  the counters hash
-- KEYS[4]  the article's latest-version pointer (string "<version>|<stream id>|<stream>")
-- ARGV[1]  expected: the version the re-check compared against
-- ARGV[2]  the new version's JSON document (its "version" is expected + 1); '' : no change
-- ARGV[3]  article id, ARGV[4] url, ARGV[5] feed: the flat fields beside `article`
-- ARGV[6]  the new version's title digest, ARGV[7] its paragraph digests (8 bytes each)
-- ARGV[8]  the page's ETag ('' none), ARGV[9] its Last-Modified ('' none)
-- ARGV[10] stream MAXLEN (0: no trimming), ARGV[11] the pointer's TTL in seconds
--
-- Returns {'gone'} (no record: expired) | {'superseded', current version} | {'unchanged'}
--       | {'published', stream id, version}

local record, stream, counters, pointer = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local expected, doc, id, url, feed, title, paragraphs, etag, modified, maxlen, pointer_ttl = unpack(ARGV, 1, 11)

local current = redis.call('HGET', record, 'v')
if not current then
  return {'gone'}
end
if current ~= expected then
  return {'superseded', current}
end

local function keep(field, value)
  if value ~= '' then
    redis.call('HSET', record, field, value)
  else
    redis.call('HDEL', record, field)
  end
end
keep('e', etag)
keep('m', modified)
if doc == '' then
  return {'unchanged'}
end

local version = tonumber(expected) + 1
local stream_id
if tonumber(maxlen) > 0 then
  stream_id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'article', doc, 'id', id, 'url', url,
                         'feed', feed)
else
  stream_id = redis.call('XADD', stream, '*', 'article', doc, 'id', id, 'url', url, 'feed', feed)
end
redis.call('HSET', record, 'v', version, 't', title, 'p', paragraphs)
redis.call('SET', pointer, version .. '|' .. stream_id .. '|' .. stream, 'EX', pointer_ttl)
redis.call('HINCRBY', counters, 'updates_published', 1)
return {'published', stream_id, tostring(version)}
