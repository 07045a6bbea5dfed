-- Publish an article's next version exactly once: the version claim and the XADD are one atomic step.
-- A re-check compares the page against the record's version; a retried or duplicated re-check that
-- comes after another one published the next version finds the record moved on and publishes nothing.
-- With an empty document (the page changed, its text did not) only the record is rewritten (the page's
-- new validators), under the same check. The near-duplicate index and the dedupe claims are left
-- alone: an update is not a new story.
--
-- KEYS[1]  the article's version record (a string that starts with its version, 4 bytes big-endian;
--          see worker/store/updates.py)
-- KEYS[2]  the stream the update goes to (<stream>:updates, or the stream itself when inline)
-- KEYS[3]  the counters hash
-- KEYS[4]  the article's latest-version pointer (string "<version>|<stream id>|<stream>")
-- ARGV[1]  expected: the version the re-check compared against, 4 bytes big-endian
-- ARGV[2]  the new version's JSON document (its "version" is expected + 1); '' : no change
-- ARGV[3]  the record as it is to be: the next version's, or the same one with new validators
-- ARGV[4]  article id, ARGV[5] url, ARGV[6] feed: the flat fields beside `article`
-- ARGV[7]  stream MAXLEN (0: no trimming), ARGV[8] the pointer's TTL in seconds
--
-- Returns {'gone'} (no record: expired) | {'superseded', current version} | {'unchanged'}
--       | {'published', stream id, version}

local record, stream, counters, pointer = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local expected, doc, next_record, id, url, feed, maxlen, pointer_ttl = unpack(ARGV, 1, 8)

local current = redis.call('GETRANGE', record, 0, 3)
if string.len(current) ~= 4 then
  return {'gone'}
end
if current ~= expected then
  return {'superseded', tostring(struct.unpack('>I4', current))}
end
-- the record keeps its TTL: it still expires a window after the first publication
redis.call('SET', record, next_record, 'KEEPTTL')
if doc == '' then
  return {'unchanged'}
end

local version = struct.unpack('>I4', expected) + 1
local stream_id
if tonumber(maxlen) > 0 then
  stream_id = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'article', doc, 'id', id, 'url', url,
                         'feed', feed)
else
  stream_id = redis.call('XADD', stream, '*', 'article', doc, 'id', id, 'url', url, 'feed', feed)
end
redis.call('SET', pointer, version .. '|' .. stream_id .. '|' .. stream, 'EX', pointer_ttl)
redis.call('HINCRBY', counters, 'updates_published', 1)
return {'published', stream_id, tostring(version)}
