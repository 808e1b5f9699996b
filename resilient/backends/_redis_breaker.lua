-- resilient: one circuit breaker step, run atomically on the Redis server.
--
-- Loaded once (SCRIPT LOAD) and called by hash (EVALSHA) from
-- resilient/backends/redis.py; every transition and counter update happens
-- here, so no process ever reads state, decides, then writes it back.
-- Time is the server's clock (TIME): hosts whose clocks disagree still agree
-- on when an open breaker may be probed.
--
-- KEYS[1] state hash      st gen until cf hs n nf ns pos wsig ep ri
-- KEYS[2] window          count window: a string ring of SIZE outcome bytes
--                         time window: a hash of BUCKETS buckets (e c f s)
-- KEYS[3] probe leases    zset: probe id -> lease expiry (ms)
-- KEYS[4] reporters       zset: reporter id -> last failure (ms), at most MIN_REPORTERS
--
-- ARGV[1] the step: acquire | record | release | flush | state | stats | readmit | isolate | reset
-- ARGV[2..16] the configuration (RedisBackend._argv)
-- ARGV[17..19] the caller's last view, if it saw the breaker ISOLATED or OPEN:
--              that state's epoch, the earliest server time it could have
--              expired, and for OPEN the server time its open period ends
--              (0 for ISOLATED; 0 0 0 for any other view); ARGV[20..] the
--              step's own arguments.
--
-- Every reply is a string of integers "state generation previous next epoch
-- expiry until ...": previous/next are -1 unless the step caused a transition;
-- epoch is the server time (ms) the state was created at (0: none stored),
-- stable until the state is lost or expires; expiry is the earliest server time
-- its keys can expire (an ISOLATED state: if reset now); until is the server
-- time an OPEN state's open period ends (0 in any other state).

if redis.replicate_commands then
  -- Redis < 5 refuses writes after TIME unless effects are replicated.
  pcall(redis.replicate_commands)
end

local S, W, P, R = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local step = ARGV[1]
local THRESHOLD = tonumber(ARGV[2])
local RECOVERY = tonumber(ARGV[3])
local MAX_PROBES = tonumber(ARGV[4])
local SUCCESSES = tonumber(ARGV[5])
local FAIL_RATE = tonumber(ARGV[6])
local SIZE = tonumber(ARGV[7])
local SPAN = tonumber(ARGV[8])
local BUCKETS = tonumber(ARGV[9])
local MIN_CALLS = tonumber(ARGV[10])
local SLOW_RATE = tonumber(ARGV[11])
local LEASE = tonumber(ARGV[12])
local TTL = tonumber(ARGV[13])
local MIN_REPORTERS = tonumber(ARGV[14])
local REPORTER_TTL = tonumber(ARGV[15])
local REPORTER = ARGV[16]
local HINT_EPOCH = tonumber(ARGV[17]) or 0
local HINT_UNTIL = tonumber(ARGV[18]) or 0
local HINT_OPEN = tonumber(ARGV[19]) or 0
local A = 19 -- the step's own arguments are ARGV[A + 1], ARGV[A + 2], ...

local CLOSED, OPEN, HALF_OPEN, ISOLATED = 0, 1, 2, 3
local WINDOWED = FAIL_RATE > 0 or SLOW_RATE > 0
local WSIG = (SPAN > 0) and ('t' .. SPAN .. '/' .. BUCKETS) or ('c' .. SIZE)

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local dirty = false
local prev, nxt = -1, -1

local h = redis.call('HMGET', S, 'st', 'gen', 'until', 'cf', 'hs', 'n', 'nf', 'ns', 'pos', 'wsig', 'ep', 'ri')
local st = tonumber(h[1])
local stored = st ~= nil
local gen, open_until, cf, hs, n, nf, ns, pos, wsig, ep, ri
if st == nil then
  -- New, expired or lost: seed the generation from the clock so that permits
  -- issued before can never match a new generation. The epoch names this
  -- state for as long as it lives.
  st, gen, open_until, cf, hs, n, nf, ns, pos, wsig = CLOSED, math.floor(now), 0, 0, 0, 0, 0, 0, 0, WSIG
  ep, ri = gen, 0
  -- Written by the first step, so that later steps agree on the generation.
  dirty = step ~= 'stats'
else
  gen = tonumber(h[2])
  open_until = tonumber(h[3]) or 0
  cf = tonumber(h[4]) or 0
  hs = tonumber(h[5]) or 0
  n = tonumber(h[6]) or 0
  nf = tonumber(h[7]) or 0
  ns = tonumber(h[8]) or 0
  pos = tonumber(h[9]) or 0
  wsig = h[10] or ''
  ep = tonumber(h[11])
  ri = tonumber(h[12]) or 0
  if ep == nil then
    ep = gen -- a state written by an older version: name it now
    dirty = step ~= 'stats'
  end
end


local function save()
  redis.call('HSET', S, 'st', st, 'gen', gen, 'until', open_until, 'cf', cf, 'hs', hs,
    'n', n, 'nf', nf, 'ns', ns, 'pos', pos, 'wsig', wsig, 'ep', ep, 'ri', ri)
  if st == ISOLATED then
    -- Held open by an operator until reset(): it must not expire.
    redis.call('PERSIST', S)
  else
    redis.call('PEXPIRE', S, TTL)
  end
  if WINDOWED then
    redis.call('PEXPIRE', W, TTL)
  end
end

local function window_clear()
  redis.call('DEL', W)
  n, nf, ns, pos = 0, 0, 0, 0
  wsig = WSIG
end

-- The state this caller last saw ISOLATED or OPEN is gone (a restart,
-- FLUSHALL, eviction), and no expiry explains it: this state was created
-- before that one could have expired. Restore it, once per lost state (ri): a
-- reset() after the restore sticks. An operator's isolation holds until
-- reset(), whatever Redis forgets. An open period the loss cut short is
-- restored over a state that is still CLOSED, until the period's own end: the
-- dependency was failing moments ago, and a fresh CLOSED state would send
-- every caller to it until enough of them fail again.
if HINT_EPOCH > 0 and step ~= 'stats' and ep ~= HINT_EPOCH and ri ~= HINT_EPOCH
    and ep < HINT_UNTIL then
  if HINT_OPEN == 0 then
    ri = HINT_EPOCH
    if st ~= ISOLATED then
      st = ISOLATED
      gen = gen + 1
    end
    dirty = true
  elseif st == CLOSED and now < HINT_OPEN then
    ri = HINT_EPOCH
    st = OPEN
    gen = gen + 1
    open_until = HINT_OPEN
    cf, hs = 0, 0
    dirty = true
  end
end

-- A process configured with another window shape starts the window afresh.
if WINDOWED and wsig ~= WSIG then
  window_clear()
  dirty = true
end

local function bucket_fields()
  local fields = {}
  for i = 0, BUCKETS - 1 do
    fields[#fields + 1] = 'e' .. i
    fields[#fields + 1] = 'c' .. i
    fields[#fields + 1] = 'f' .. i
    fields[#fields + 1] = 's' .. i
  end
  return fields
end

local function time_totals(epoch)
  local v = redis.call('HMGET', W, unpack(bucket_fields()))
  n, nf, ns = 0, 0, 0
  for i = 0, BUCKETS - 1 do
    local e = tonumber(v[4 * i + 1])
    if e and e > epoch - BUCKETS and e <= epoch then
      n = n + (tonumber(v[4 * i + 2]) or 0)
      nf = nf + (tonumber(v[4 * i + 3]) or 0)
      ns = ns + (tonumber(v[4 * i + 4]) or 0)
    end
  end
end

local function epoch_now()
  return math.floor(now / (SPAN / BUCKETS))
end

-- Record k calls with outcome code (bit 1 failed, bit 2 slow).
local function window_add(code, k)
  local failed = code % 2
  local slow = math.floor(code / 2)
  if SPAN > 0 then
    local epoch = epoch_now()
    local i = epoch % BUCKETS
    if tonumber(redis.call('HGET', W, 'e' .. i)) ~= epoch then
      redis.call('HSET', W, 'e' .. i, epoch, 'c' .. i, 0, 'f' .. i, 0, 's' .. i, 0)
    end
    redis.call('HINCRBY', W, 'c' .. i, k)
    if failed == 1 then redis.call('HINCRBY', W, 'f' .. i, k) end
    if slow == 1 then redis.call('HINCRBY', W, 's' .. i, k) end
    time_totals(epoch)
    return
  end
  -- Count window: a ring of SIZE bytes, '0'..'3' per call (a zero byte is empty).
  local c = string.char(48 + code)
  if k >= SIZE then
    redis.call('SET', W, string.rep(c, SIZE))
    n, nf, ns, pos = SIZE, failed * SIZE, slow * SIZE, 0
    return
  end
  while k > 0 do
    local len = math.min(k, SIZE - pos)
    local old = redis.call('GETRANGE', W, pos, pos + len - 1)
    for i = 1, #old do
      local b = string.byte(old, i) - 48
      if b >= 0 then
        n = n - 1
        nf = nf - b % 2
        ns = ns - math.floor(b / 2)
      end
    end
    redis.call('SETRANGE', W, pos, string.rep(c, len))
    n = n + len
    nf = nf + failed * len
    ns = ns + slow * len
    pos = (pos + len) % SIZE
    k = k - len
  end
end

local function rates_reached()
  if FAIL_RATE == 0 and cf >= THRESHOLD then return true end
  if not WINDOWED then return false end
  local min_calls = MIN_CALLS
  if SPAN == 0 and SIZE < min_calls then min_calls = SIZE end
  if n < min_calls then return false end
  return (FAIL_RATE > 0 and nf / n >= FAIL_RATE) or (SLOW_RATE > 0 and ns / n >= SLOW_RATE)
end

local function reporters_agree()
  if MIN_REPORTERS <= 1 then return true end
  redis.call('ZREMRANGEBYSCORE', R, '-inf', now - REPORTER_TTL)
  return redis.call('ZCARD', R) >= MIN_REPORTERS
end

local function report()
  if MIN_REPORTERS <= 1 then return end
  redis.call('ZADD', R, now, REPORTER)
  -- Keep only the most recent MIN_REPORTERS reporters: enough to decide, bounded.
  redis.call('ZREMRANGEBYRANK', R, 0, -(MIN_REPORTERS + 1))
  redis.call('PEXPIRE', R, math.ceil(REPORTER_TTL))
end

-- Probe leases survive transitions: a probe admitted in an earlier HALF_OPEN
-- round still runs, so it keeps its slot until its record or release step
-- frees it or its lease expires. Running probes never exceed MAX_PROBES.
local function transition(to)
  prev, nxt = st, to
  st = to
  gen = gen + 1
  hs = 0
  dirty = true
end

local function open_circuit()
  transition(OPEN)
  -- floor: never later than configured, so retry_after <= recovery_timeout
  open_until = math.floor(now + RECOVERY)
  cf = 0
  redis.call('DEL', R)
end

local function close_circuit()
  transition(CLOSED)
  cf = 0
  if WINDOWED then window_clear() end
  redis.call('DEL', R)
end

local function half_open_if_due()
  if st == OPEN and now >= open_until then transition(HALF_OPEN) end
end

-- Apply a CLOSED call's outcome; opens the breaker when a threshold is reached
-- (unless evaluate is false: a plain flush reports no transition, so it makes none).
local function count(code, k, evaluate)
  dirty = true
  if code % 2 == 1 then
    cf = cf + k
  else
    if cf > 0 and FAIL_RATE == 0 and MIN_REPORTERS > 1 then
      -- A success ends the failure streak, and the streak's reporters with it.
      redis.call('DEL', R)
    end
    cf = 0
  end
  if WINDOWED then window_add(code, k) end
  if code > 0 then report() end
  if evaluate and rates_reached() and reporters_agree() then
    open_circuit()
    return true
  end
  return false
end

-- Successes a process deferred (sent with its next step): CLOSED only, same generation.
local function flush(pgen, k, evaluate)
  k = tonumber(k) or 0
  if k <= 0 or tonumber(pgen) ~= gen or st ~= CLOSED then return false end
  if cf == 0 and not WINDOWED then return false end
  return count(0, k, evaluate)
end

-- One bulk string of space-separated integers: a client parses it in one
-- read, where an array costs a read per element.
local function encode(r)
  for i = 1, #r do r[i] = string.format('%d', r[i]) end
  return table.concat(r, ' ')
end

-- The earliest server time this state's keys can expire: what lets a caller
-- tell a lost state from an expired one.
local function expiry()
  if st ~= ISOLATED then
    local ttl = redis.call('PTTL', S)
    if ttl == -2 then return 0 end
    if ttl >= 0 then return math.floor(now + ttl) end
  end
  -- Persistent (ISOLATED): its expiry starts when it is reset, at the earliest now.
  return math.floor(now + TTL)
end

local function reply(extra)
  if dirty then save() end
  local r = {st, gen, prev, nxt, ep, expiry(), (st == OPEN) and open_until or 0}
  if extra then
    for i = 1, #extra do r[#r + 1] = extra[i] end
  end
  return encode(r)
end

if step == 'acquire' then
  -- ARGV[A + 1] deferred-success generation, ARGV[A + 2] their count,
  -- ARGV[A + 3] a per-process sequence number: a probe's lease id is REPORTER#seq.
  -- Reply extra: {admitted, permit generation, probe, retry_after_us}.
  local before = gen
  if flush(ARGV[A + 1], ARGV[A + 2], true) then
    -- The deferred successes completed the window that opened the breaker:
    -- this call is admitted as one already in flight (stale generation),
    -- and its permit carries the transition so it is reported once.
    return reply({1, before, 0, 0})
  end
  if st == ISOLATED then return reply({0, gen, 0, -1}) end
  if st == OPEN then
    if now < open_until then
      return reply({0, gen, 0, math.ceil((open_until - now) * 1000)})
    end
    transition(HALF_OPEN)
  end
  if st == HALF_OPEN then
    -- Leases of probes whose process died expire here; the others count,
    -- whichever round admitted them.
    redis.call('ZREMRANGEBYSCORE', P, '-inf', now)
    if redis.call('ZCARD', P) < MAX_PROBES then
      redis.call('ZADD', P, now + LEASE, REPORTER .. '#' .. ARGV[A + 3])
      redis.call('PEXPIRE', P, TTL)
      return reply({1, gen, 1, 0})
    end
    return reply({0, gen, 0, 0})
  end
  return reply({1, gen, 0, 0})
end

if step == 'record' then
  -- ARGV[A + 1] permit generation, ARGV[A + 2] outcome code, ARGV[A + 3] probe
  -- id or '', ARGV[A + 4] deferred-success generation, ARGV[A + 5] their count.
  local pgen = tonumber(ARGV[A + 1])
  local code = tonumber(ARGV[A + 2])
  local probe = ARGV[A + 3]
  if flush(ARGV[A + 4], ARGV[A + 5], true) then return reply(nil) end
  if probe ~= '' then redis.call('ZREM', P, probe) end
  if pgen ~= gen then return reply(nil) end
  if st == CLOSED and probe == '' then
    count(code, 1, true)
  elseif st == HALF_OPEN and probe ~= '' then
    if code > 0 then
      -- A failed or slow probe: the dependency is not back yet.
      open_circuit()
    else
      hs = hs + 1
      dirty = true
      if hs >= SUCCESSES then close_circuit() end
    end
  end
  return reply(nil)
end

if step == 'release' then
  -- ARGV[A + 1] probe id: a neutral probe frees its slot at once.
  redis.call('ZREM', P, ARGV[A + 1])
  return reply(nil)
end

if step == 'flush' then
  -- ARGV[A + 1] deferred-success generation, ARGV[A + 2] their count.
  flush(ARGV[A + 1], ARGV[A + 2], false)
  return reply(nil)
end

if step == 'state' then
  half_open_if_due()
  return reply(nil)
end

if step == 'stats' then
  -- Read-only. Extra: {calls, failures, slow, consecutive, probes, probe successes, retry_after_us}.
  if WINDOWED and SPAN > 0 then time_totals(epoch_now()) end
  dirty = false
  local retry = -1
  if st == OPEN then retry = math.max(0, math.ceil((open_until - now) * 1000)) end
  local probes = redis.call('ZCOUNT', P, '(' .. now, '+inf')
  local open_end = (st == OPEN) and open_until or 0
  return encode({st, gen, -1, -1, stored and ep or 0, expiry(), open_end, n, nf, ns, cf, probes, hs, retry})
end

if step == 'readmit' then
  -- ARGV[A + 1] the generation a call was admitted in; it then waited in a
  -- queue of its process and is checked again before it calls the dependency.
  -- No transition (a due OPEN stays OPEN until an admission moves it).
  -- Reply extra: {go ahead, retry_after_us (-1: unknown, until reset)}.
  if tonumber(ARGV[A + 1]) == gen or st == CLOSED then return reply({1, 0}) end
  if st == OPEN then return reply({0, math.max(0, math.ceil((open_until - now) * 1000))}) end
  if st == ISOLATED then return reply({0, -1}) end
  return reply({0, 0})
end

if step == 'isolate' then
  if st ~= ISOLATED then transition(ISOLATED) end
  return reply(nil)
end

if step == 'reset' then
  local was = st
  close_circuit()
  if was == CLOSED then prev, nxt = -1, -1 end
  return reply(nil)
end

return redis.error_reply('resilient: unknown breaker step ' .. tostring(step))
