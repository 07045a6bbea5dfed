-- Point outbox entries at a job (or keep their job) and set when the sweeper looks at them next.
-- Only entries still pending are touched: one its job settled meanwhile (published, or found a
-- duplicate) stays settled, so a sweep or a hold racing a publish never brings an entry back.
--
-- KEYS[1]  the outbox zset: entry token -> epoch when the sweeper checks the entry next
-- KEYS[2]  the outbox job hash: entry token -> "<RQ job id>|<times re-queued by the sweeper>"
-- KEYS[3]  the outbox entry hash: entry token -> the entry's JSON (only its TTL is renewed here)
-- ARGV[1]  the epoch of the next check
-- ARGV[2]  seconds the outbox keys live after their last write
-- ARGV[3 ..] triples: entry token, its new job id ('' keeps the current one), its new count of
--          re-queues ('' keeps the current one)
--
-- Returns the number of entries still pending (and so updated).

local check_at, ttl = ARGV[1], ARGV[2]
local updated = 0
for i = 3, #ARGV, 3 do
  local token, job, requeues = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('ZSCORE', KEYS[1], token) then
    redis.call('ZADD', KEYS[1], check_at, token)
    if job ~= '' or requeues ~= '' then
      local current = redis.call('HGET', KEYS[2], token) or '|0'
      local bar = string.find(current, '|', 1, true) or (string.len(current) + 1)
      if job == '' then
        job = string.sub(current, 1, bar - 1)
      end
      if requeues == '' then
        requeues = string.sub(current, bar + 1)
      end
      redis.call('HSET', KEYS[2], token, job .. '|' .. requeues)
    end
    updated = updated + 1
  end
end
if updated > 0 then
  for k = 1, 3 do
    redis.call('EXPIRE', KEYS[k], ttl)
  end
end
return updated
