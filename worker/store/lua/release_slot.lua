-- Gives back a request slot and wakes one waiter for the host: a token pushed on the
-- host's wake list, which waiters BLPOP (any worker, any machine). A token pushed when
-- nobody waits stays (at most `limit` of them, for a short while): a waiter that missed
-- the release between its refused acquire and its BLPOP then wakes at once, so no
-- wake-up is lost; a stale one only costs a waiter one more acquire.
-- KEYS[1]  the host's inflight zset (request token -> lease expiry)
-- KEYS[2]  the host's wake list
-- ARGV[1]  request token
-- ARGV[2]  slots allowed at once (the most tokens kept)
-- ARGV[3]  seconds a token is kept
-- Returns 1 when the slot was held (a waiter was woken), 0 when its lease had lapsed.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
