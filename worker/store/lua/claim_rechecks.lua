-- Claim re-checks of published articles: each at most once per min_interval, only while its version
-- record lives (it expires FEEDSTREAM_UPDATE_WINDOW after the first publication). One step for the
-- whole batch, so two polls listing the same article cannot both queue its re-check.
--
-- KEYS[1] .. KEYS[n]  the articles' version records (hashes, see worker/store/updates.py)
-- ARGV[1]     now, epoch seconds
-- ARGV[2]     min_interval, seconds between two checks of one article
--
-- Returns one integer per key: 1 claimed (its `c`, last check, set to now), 0 checked too recently,
-- -1 no record (never published with updates on, or older than the window).

local now, gap = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local checked = redis.call('HGET', key, 'c')
  if not checked then
    out[i] = -1
  elseif now - tonumber(checked) < gap then
    out[i] = 0
  else
    redis.call('HSET', key, 'c', now)
    out[i] = 1
  end
end
return out
