-- A counting semaphore with leases: a slot whose holder died (killed worker) lapses at
-- its expiry instead of leaking. RQ's RateLimit counts jobs, not requests, and a job
-- here makes requests to several hosts (an extract batch, robots.txt), so the slot is
-- taken around each request instead. It also refuses while the host's "not before"
-- lies ahead, returning it: one round trip answers both "may we?" and "is there room?".
-- KEYS[1]  the host's inflight zset (request token -> lease expiry)
-- KEYS[2]  the host's not_before string
-- ARGV[1]  request token
-- ARGV[2]  slots allowed at once
-- ARGV[3]  now (epoch seconds)
-- ARGV[4]  lease seconds
-- Returns '1' (taken), '0' (all in use) or the not-before epoch; strings, because Lua
-- numbers come back truncated to integers.
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
