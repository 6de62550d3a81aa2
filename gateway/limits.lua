-- Switchyard limits: admit a request against every limit that applies to it, atomically; or settle ended requests.
-- Semantics: gateway/limits_base.py (gateway/limits_memory.py is the same algorithm in Python).
--
-- KEYS   per limit, in order: requests → log (zset); tokens → log (zset), weights (hash, "_" = total);
--        concurrent → leases (zset, score = expiry); usd_day / usd_month → budget (hash: p = period, s = spent).
--        All keys of one call share the tenant's hash tag, so the call is valid on Redis Cluster.
-- ARGV   mode ("admit" | "settle" | "cancel"), entry count, per entry: now (ms; "0": Redis TIME, one clock for every replica),
--        id, tokens (admit: the prompt estimate; settle: actual minus estimate), usd (settle: the cost);
--        then per limit: kind (1 requests, 2 tokens, 3 concurrent, 4 usd_day, 5 usd_month), amount, span (ms).
--        An admission has one entry; a settlement may carry many requests of the same limits. A cancellation
--        takes back admissions whose requests were never sent: they stop counting against every limit.
-- Admit returns {admitted, failed (1-based, 0 none), retry_ms (-1 never), requests limit, remaining, reset_ms,
--        tokens limit, remaining, reset_ms, now}; limit -1 when there is none of that kind.

local mode, entries = ARGV[1], tonumber(ARGV[2])
local first_spec = 3 + 4 * entries
local count = (#ARGV - first_spec + 1) / 3
local now, redis_now -- now: the current entry's time, read by the helpers below

local function time_of(value)
  local given = tonumber(value)
  if given ~= 0 then return given end
  if redis_now == nil then
    local t = redis.call('TIME')
    redis_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return redis_now
end

local REQUESTS, TOKENS, CONCURRENT, USD_DAY = 1, 2, 3, 4
local DAY = 86400000
local CONCURRENCY_RETRY = 1000
local BATCH = 256

-- Calendar months from days since 1970-01-01 and back (H. Hinnant's civil-date algorithms, UTC).
local function month_of(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return y * 12 + m - 1
end

local function month_start(index)
  local y, m = math.floor(index / 12), index % 12 + 1
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + math.floor((153 * mp + 2) / 5)
  return (era * 146097 + doe - 719468) * DAY
end

local function period(kind)
  if kind == USD_DAY then return math.floor(now / DAY) end
  return month_of(math.floor(now / DAY))
end

local function period_end(kind, p)
  if kind == USD_DAY then return (p + 1) * DAY end
  return month_start(p + 1)
end

-- Drops the entries that left the window from a weighted log, and their weight from its total.
local function evict(log, weights, cutoff)
  while true do
    local old = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff, 'LIMIT', 0, BATCH)
    if #old == 0 then return end
    local w = redis.call('HMGET', weights, unpack(old))
    local freed = 0
    for i = 1, #w do freed = freed + (tonumber(w[i]) or 0) end
    redis.call('HDEL', weights, unpack(old))
    redis.call('ZREM', log, unpack(old))
    redis.call('HINCRBY', weights, '_', -freed)
    if #old < BATCH then return end
  end
end

-- Milliseconds until `needed` tokens have left the window (at most the window: everything has left by then).
local function time_freeing(log, weights, needed, span)
  local oldest = redis.call('ZRANGE', log, 0, BATCH - 1, 'WITHSCORES')
  if #oldest == 0 then return span end
  local ids = {}
  for i = 1, #oldest, 2 do ids[#ids + 1] = oldest[i] end
  local w = redis.call('HMGET', weights, unpack(ids))
  local freed = 0
  for i = 1, #ids do
    freed = freed + (tonumber(w[i]) or 0)
    if freed >= needed then return tonumber(oldest[2 * i]) + span - now end
  end
  return span
end

local function oldest_reset(log, span)
  local first = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
  local at = #first > 0 and tonumber(first[2]) or now
  return at + span - now
end

local function spec(i)
  local at = first_spec + 3 * (i - 1)
  return tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
end

local function settle(id, tokens, usd)
  local k = 1
  for i = 1, count do
    local kind, amount, span = spec(i)
    if kind == TOKENS then
      local log, weights = KEYS[k], KEYS[k + 1]
      k = k + 2
      if tokens ~= 0 then
        local at = tonumber(redis.call('ZSCORE', log, id))
        if at and at > now - span then
          redis.call('HINCRBY', weights, id, tokens)
          redis.call('HINCRBY', weights, '_', tokens)
        elseif tokens > 0 then -- the estimate already left the window: the rest counts from now
          redis.call('ZADD', log, now, id .. '+')
          redis.call('HSET', weights, id .. '+', tokens)
          redis.call('HINCRBY', weights, '_', tokens)
        end
        redis.call('PEXPIRE', log, span)
        redis.call('PEXPIRE', weights, span)
      end
    elseif kind == CONCURRENT then
      redis.call('ZREM', KEYS[k], id)
      k = k + 1
    elseif kind >= USD_DAY then
      local budget = KEYS[k]
      k = k + 1
      if usd > 0 then
        local p = period(kind)
        if tonumber(redis.call('HGET', budget, 'p')) == p then
          redis.call('HINCRBYFLOAT', budget, 's', usd)
        else
          redis.call('HSET', budget, 'p', p, 's', usd)
        end
        redis.call('PEXPIRE', budget, period_end(kind, p) - now + DAY)
      end
    else
      k = k + 1
    end
  end
end

-- An admitted request that was never sent: out of every log, its lease and its token weight freed.
local function cancel(id)
  local k = 1
  for i = 1, count do
    local kind = spec(i)
    if kind == TOKENS then
      local log, weights = KEYS[k], KEYS[k + 1]
      k = k + 2
      local weight = tonumber(redis.call('HGET', weights, id))
      if weight then
        redis.call('HDEL', weights, id)
        redis.call('HINCRBY', weights, '_', -weight)
        redis.call('ZREM', log, id)
      end
    else
      if kind == REQUESTS or kind == CONCURRENT then redis.call('ZREM', KEYS[k], id) end
      k = k + 1
    end
  end
end

if mode == 'cancel' then
  for e = 0, entries - 1 do cancel(ARGV[4 + 4 * e]) end
  return 0
end
if mode == 'settle' then
  for e = 0, entries - 1 do
    local at = 3 + 4 * e
    now = time_of(ARGV[at])
    settle(ARGV[at + 1], tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]))
  end
  return 0
end
now = time_of(ARGV[3])
local id, tokens = ARGV[4], tonumber(ARGV[5])

-- admit, pass 1: check every limit; nothing is written unless all of them admit
local failed, retry = 0, 0
local shown = {}  -- kind -> {limit, remaining, reset} of the tightest limit of that kind
local k = 1
for i = 1, count do
  local kind, amount, span = spec(i)
  local refused
  if kind == REQUESTS or kind == TOKENS then
    local log, weights = KEYS[k], KEYS[k + 1]
    local used, cost
    if kind == REQUESTS then
      k = k + 1
      redis.call('ZREMRANGEBYSCORE', log, '-inf', now - span)
      used, cost = redis.call('ZCARD', log), 1
    else
      k = k + 2
      evict(log, weights, now - span)
      used, cost = tonumber(redis.call('HGET', weights, '_') or '0'), tokens
    end
    if cost > amount then
      refused = -1
    elseif used + cost > amount then
      if kind == REQUESTS then -- the entry whose expiry brings the count below the limit
        local at = redis.call('ZRANGE', log, used - amount, used - amount, 'WITHSCORES')
        refused = tonumber(at[2]) + span - now
      else
        refused = time_freeing(log, weights, used + cost - amount, span)
      end
    end
    local best = shown[kind]
    if best == nil or amount - used < best[2] then
      shown[kind] = {amount, amount - used, oldest_reset(log, span), cost}
    end
  elseif kind == CONCURRENT then
    redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
    if redis.call('ZCARD', KEYS[k]) + 1 > amount then refused = CONCURRENCY_RETRY end
    k = k + 1
  else
    local stored = redis.call('HMGET', KEYS[k], 'p', 's')
    local p = period(kind)
    local spent = tonumber(stored[1]) == p and tonumber(stored[2]) or 0
    if spent >= amount then refused = period_end(kind, p) - now end
    k = k + 1
  end
  if refused and (failed == 0 or (retry >= 0 and (refused < 0 or refused > retry))) then
    failed, retry = i, refused
  end
end

-- pass 2: consume
if failed == 0 then
  k = 1
  for i = 1, count do
    local kind, amount, span = spec(i)
    if kind == REQUESTS then
      redis.call('ZADD', KEYS[k], now, id)
      redis.call('PEXPIRE', KEYS[k], span)
    elseif kind == TOKENS then
      redis.call('ZADD', KEYS[k], now, id)
      redis.call('HSET', KEYS[k + 1], id, tokens)
      redis.call('HINCRBY', KEYS[k + 1], '_', tokens)
      redis.call('PEXPIRE', KEYS[k], span)
      redis.call('PEXPIRE', KEYS[k + 1], span)
      k = k + 1
    elseif kind == CONCURRENT then
      redis.call('ZADD', KEYS[k], now + span, id)
      redis.call('PEXPIRE', KEYS[k], span)
    end
    k = k + 1
  end
end

-- remaining: after this request if it was admitted, as it stands if not
local function headline(kind)
  local s = shown[kind]
  if s == nil then return -1, 0, 0 end
  local remaining = s[2] - (failed == 0 and s[4] or 0)
  return s[1], remaining > 0 and remaining or 0, s[3]
end
local rl, rr, rs = headline(REQUESTS)
local tl, tr, ts = headline(TOKENS)
return {failed == 0 and 1 or 0, failed, retry, rl, rr, rs, tl, tr, ts, now}
