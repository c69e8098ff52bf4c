"""The Lua scripts of the Redis limits backend (ratelimit_redis.py): each one atomic in Redis, on Redis' clock."""

from __future__ import annotations

# KEYS: the window keys, then per counter its key and its hold set. ARGV: n_windows, then per window (limit,
# window_ms), then per counter (limit, amount, ttl_s), then the hold id, then the lease (ms).
# Returns {1, used1, held1, ...} | {0, index, retry_ms, used, held} | {-1, index} (counter needs a seed); `index`
# counts windows then counters, from 1. Holds are `id:amount` members scored by their lease's end (Redis' clock).
_ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nw = tonumber(ARGV[1])
local nc = (#KEYS - nw) / 2
for i = 1, nw do
  local limit = tonumber(ARGV[2 + (i - 1) * 2])
  local win = tonumber(ARGV[3 + (i - 1) * 2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - win)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    return {0, i, tonumber(oldest[2]) + win - now, 0, 0}
  end
end
local base = 2 + nw * 2
local used, held = {}, {}
for j = 1, nc do
  local ck, hk = KEYS[nw + 2 * j - 1], KEYS[nw + 2 * j]
  redis.call('ZREMRANGEBYSCORE', hk, '-inf', now)
  local h = 0
  for _, m in ipairs(redis.call('ZRANGE', hk, 0, -1)) do
    h = h + tonumber(string.match(m, ':(%d+)$'))
  end
  local v = redis.call('GET', ck)
  if not v then return {-1, nw + j} end
  local limit = tonumber(ARGV[base + (j - 1) * 3])
  local amount = tonumber(ARGV[base + 1 + (j - 1) * 3])
  if tonumber(v) + h + amount > limit then return {0, nw + j, 0, tonumber(v), h} end
  used[j], held[j] = tonumber(v), h
end
local hold = ARGV[base + nc * 3]
local lease = tonumber(ARGV[base + nc * 3 + 1])
for i = 1, nw do
  redis.call('ZADD', KEYS[i], now, hold)
  redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 + (i - 1) * 2]))
end
local out = {1}
for j = 1, nc do
  local ck, hk = KEYS[nw + 2 * j - 1], KEYS[nw + 2 * j]
  local amount = tonumber(ARGV[base + 1 + (j - 1) * 3])
  local ttl = tonumber(ARGV[base + 2 + (j - 1) * 3])
  if amount > 0 then
    redis.call('ZADD', hk, now + lease, hold .. ':' .. amount)
    redis.call('EXPIRE', hk, ttl)
  end
  redis.call('EXPIRE', ck, ttl)
  out[2 * j] = used[j]
  out[2 * j + 1] = held[j]
end
return out
"""

# Adjust only an existing counter (a missing one will be seeded from SQL, which already has the figure).
_ADJUST_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local v = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
if v < 0 then redis.call('SET', KEYS[1], 0) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS: counter, its hold set. ARGV: the hold's member, what the call used, ttl_s. The hold goes, the use counts.
_SETTLE_LUA = """
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local v = redis.call('INCRBY', KEYS[1], tonumber(ARGV[2]))
if v < 0 then redis.call('SET', KEYS[1], 0) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS: per level its counter and hold set. ARGV: per level (member, actual, ttl_s). Every level of one call at once.
_SETTLE_MANY_LUA = """
for i = 1, #KEYS / 2 do
  local ck, hk = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('ZREM', hk, ARGV[3 * i - 2])
  if redis.call('EXISTS', ck) == 1 then
    local v = redis.call('INCRBY', ck, tonumber(ARGV[3 * i - 1]))
    if v < 0 then redis.call('SET', ck, 0) end
    redis.call('EXPIRE', ck, tonumber(ARGV[3 * i]))
  end
end
return 1
"""

# KEYS: the turn's mark (a hash: unit -> what was charged for the turn so far), then per counter its key and hold set.
# ARGV: the mark's ttl_s, then per counter (hold member or '', unit, amount, ttl_s). Each unit's counters get only what
# exceeds what was already charged for the turn (by its process settling it or a survivor reaping it): counted once.
_CHARGE_ONCE_LUA = """
local n = (#KEYS - 1) / 2
local delta = {}
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local unit, amount = ARGV[b + 2], tonumber(ARGV[b + 3])
  if delta[unit] == nil then
    local before = tonumber(redis.call('HGET', KEYS[1], unit) or '0')
    if amount > before then
      delta[unit] = amount - before
      redis.call('HSET', KEYS[1], unit, amount)
    else
      delta[unit] = 0
    end
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
for i = 1, n do
  local b = 1 + (i - 1) * 4
  local ck, hk = KEYS[2 * i], KEYS[2 * i + 1]
  if ARGV[b + 1] ~= '' then redis.call('ZREM', hk, ARGV[b + 1]) end
  if redis.call('EXISTS', ck) == 1 then
    redis.call('INCRBY', ck, delta[ARGV[b + 2]])
    redis.call('EXPIRE', ck, tonumber(ARGV[b + 4]))
  end
end
return 1
"""

_BUMP_LUA = """
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# KEYS: hold sets; ARGV: lease_ms, then one member per key. Only holds still there are extended (XX).
_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + lease, ARGV[i + 1])
end
return #KEYS
"""

# KEYS: a hold set. The live holds' total (expired ones purged).
_HELD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local h = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  h = h + tonumber(string.match(m, ':(%d+)$'))
end
return h
"""
