-- A host's "not before" only ever moves later: two workers hit by 429s with different
-- Retry-After values keep the longer wait.
-- KEYS[1]  the host's not_before string
-- ARGV[1]  epoch before which nobody fetches from the host
-- ARGV[2]  time to live of the key, milliseconds
-- Returns 1 when the time was moved, 0 when a later one was already set.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
