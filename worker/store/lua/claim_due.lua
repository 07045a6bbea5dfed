-- Hand out the feeds whose poll is due and push each one's slot forward by the lease
-- in the same step, so two schedulers never claim one slot.
-- KEYS[1]  the due zset (feed name -> epoch of its next poll)
-- ARGV[1]  now (epoch seconds)
-- ARGV[2]  lease seconds
-- ARGV[3]  at most this many feeds
-- Returns the names handed out.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, name in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), name)
end
return due
