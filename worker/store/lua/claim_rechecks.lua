-- Claim re-checks of published articles: each at most once per min_interval, only while its version
-- record lives (it expires FEEDSTREAM_UPDATE_WINDOW after the first publication). One step for the
-- whole batch, so two polls listing the same article cannot both queue its re-check.
--
-- KEYS[1] .. KEYS[n]  the articles' version records (strings, see worker/store/updates.py)
-- ARGV[1]     now, epoch seconds
-- ARGV[2]     min_interval, seconds between two checks of one article
-- ARGV[3]     the byte offset of a record's last check time (4 bytes, big-endian)
--
-- Returns one integer per key: 1 claimed (its last check set to now, its TTL kept), 0 checked too
-- recently, -1 no record (never published with updates on, or older than the window).

local now, gap, at = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i, key in ipairs(KEYS) do
  local checked = redis.call('GETRANGE', key, at, at + 3)
  if string.len(checked) ~= 4 then
    out[i] = -1
  elseif now - struct.unpack('>I4', checked) < gap then
    out[i] = 0
  else
    redis.call('SETRANGE', key, at, struct.pack('>I4', now))
    out[i] = 1
  end
end
return out
