-- resilient: one rate limiter step (GCRA), run atomically on the Redis server.
--
-- Loaded once (SCRIPT LOAD) and called by hash (EVALSHA) from
-- resilient/backends/_redis_limiter.py. The whole state is one integer, the
-- theoretical arrival time (TAT) in microseconds of the server's clock
-- (TIME): every process of the fleet reads the same clock, so hosts whose
-- clocks disagree still share one limit.
--
-- KEYS[1] the TAT (a string of digits; absent means "idle": TAT <= now)
--
-- ARGV[1] the step: reserve | cancel
-- ARGV[2] interval: microseconds between permits at the sustained rate
-- ARGV[3] limit: burst * interval, how far the TAT may run ahead of now
-- ARGV[4] reserve: the longest wait the caller accepts (us, at most 1e15)
--         cancel:  the TAT its reservation set (the token it was given)
--
-- Lua numbers are doubles: integers are exact below 2^53 (9.007e15). The
-- client keeps limit <= 1e15 and the wait bound <= 1e15 (and interval <=
-- limit), so the TAT is never more than limit + 1e15 ahead of now and the
-- largest number here, now + limit + wait + interval, stays below now +
-- 3e15: exact while now < 6e15 us (until about the year 2160).
--
-- reserve replies "1 wait_us tat_us now_us" (granted: run after wait_us)
--             or "0 retry_after_us 0 now_us" (refused, nothing changed).
-- cancel replies "1" if the reservation was given back, else "0".

if redis.replicate_commands then
  -- Redis < 5 refuses writes after TIME unless effects are replicated.
  pcall(redis.replicate_commands)
end

local KEY = KEYS[1]
local step = ARGV[1]
local interval = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEY) or '0')

-- Integers of 16 digits: tostring() (and redis.call's own conversion) would
-- round them to 14 significant digits.
local function digits(n)
  return string.format('%.0f', n)
end

local function store(value)
  if value <= now then
    redis.call('DEL', KEY)  -- idle again: the same as no key
  else
    -- The key outlives its TAT by a second, then idles away by itself.
    redis.call('SET', KEY, digits(value), 'PX', math.ceil((value - now) / 1000) + 1000)
  end
end

if step == 'reserve' then
  local max_wait = tonumber(ARGV[4])
  local new = math.max(tat, now) + interval
  local wait = new - limit - now
  if wait < 0 then
    wait = 0
  elseif wait > max_wait then
    return '0 ' .. digits(wait) .. ' 0 ' .. digits(now)
  end
  store(new)
  return '1 ' .. digits(wait) .. ' ' .. digits(new) .. ' ' .. digits(now)
elseif step == 'cancel' then
  -- Only the latest reservation can be given back: one behind it was
  -- scheduled counting on this one, and moving the TAT back under it would
  -- let the fleet exceed the limit. An earlier one simply goes unused.
  if tat == tonumber(ARGV[4]) and tat > now then
    store(tat - interval)
    return '1'
  end
  return '0'
end
return redis.error_reply('resilient rate limiter: unknown step ' .. tostring(step))
