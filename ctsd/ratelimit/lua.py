"""The shared buckets' accounting, as Redis scripts: each runs atomically on the server.

Time is Redis's own (`TIME`, in milliseconds), so daemons whose clocks differ
agree on every window. A moment a daemon saw on its own clock travels as an age
("so many ms ago": an answer's arrival, never placed earlier than it was) or, for
a usage header's, as a Redis time never later than it was (`FleetLink.redis_clock`):
each errs on the side that counts more.
Per bucket, these keys:

    <bucket>:c   sorted set of charges: member "<id>|<weight>", score = when it stops
                 counting. A grant counts until `now + max_flight + span`, renewed by
                 its daemon's heartbeat while unanswered (`REFRESH`: a daemon that
                 dies with a request in flight cannot hold it for ever), and its
                 landing moves that to `max(sent + guard, answer) + interval`, as
                 `ctsd.ratelimit.meters.SlidingWindow` does. Members "~<id>|<w>" are
                 the pieces of the corrections' profile (`meters.raised_corrections`).
    <bucket>:g   hash: charge member → when it was granted (what a usage header
                 written before then cannot have counted).
    <bucket>:s   hash: `sum` of the charges' weights, `paused` (until, ms), and for a
                 decaying counter `level` and `at`.
    <bucket>:w   sorted set of waiting requests ("<waiter>|<weight>"), score =
                 lane * 2^42 + arrival: a request goes only if what it needs fits
                 after everyone ahead of it in every daemon (priority lanes, and no
                 heavy request starved by light ones). `<bucket>:l` holds each
                 waiter's lease: a daemon that died waiting blocks nobody for long.

Fleet keys: `members` (sorted set: member → last heartbeat), `members:n` (hash:
member → how many members it counted, hence the share it takes when it cannot
reach Redis), `epoch` (a token that changes when Redis lost its data) and
`recovery` (when an outage that lost data may have begun). While a member's
heartbeat is stale its fallback share is reserved in every bucket (see
`ctsd.ratelimit.shared`), and after a loss of data nothing is granted until
every charge granted before it has stopped counting.

Scripts return strings: Redis truncates Lua numbers to integers.
"""

COMMON = r"""
local EPS = 1e-9
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function fmt(x) return string.format('%.17g', x) end
local function num(v, default) if v then return tonumber(v) end return default end
local function weight_of(member) return tonumber(string.match(member, '|([^|]*)$')) end
local function expire(c, s, g, now)
  local gone = redis.call('ZRANGEBYSCORE', c, '-inf', now)
  if #gone == 0 then return num(redis.call('HGET', s, 'sum'), 0) end
  local sum = num(redis.call('HGET', s, 'sum'), 0)
  for _, m in ipairs(gone) do sum = sum - weight_of(m) end
  redis.call('ZREMRANGEBYSCORE', c, '-inf', now)
  for _, m in ipairs(gone) do redis.call('HDEL', g, m) end
  if redis.call('ZCARD', c) == 0 or sum < 0 then sum = 0 end
  redis.call('HSET', s, 'sum', fmt(sum))
  return sum
end
local function drain(s, rate, now)
  local level = num(redis.call('HGET', s, 'level'), 0)
  local at = num(redis.call('HGET', s, 'at'), now)
  if now > at then level = math.max(level - (now - at) * rate, 0); at = now end
  redis.call('HSET', s, 'level', fmt(level), 'at', fmt(at))
  return level
end
local function charge(c, s, g, member, weight, expiry, granted)
  if not redis.call('ZSCORE', c, member) then
    redis.call('HSET', s, 'sum', fmt(num(redis.call('HGET', s, 'sum'), 0) + weight))
    redis.call('HSETNX', g, member, fmt(granted))
  end
  redis.call('ZADD', c, expiry, member)
end
"""

ACQUIRE = COMMON + r"""
-- KEYS: members, members:n, epoch, recovery, then per bucket c, s, w, l, g
-- ARGV: epoch, waiter, lane, lease, ttl, extra (fallback limit + max flight), max flight, n,
--       then per bucket: kind ('w' | 'd'), weight, capacity, span, interval, charge member
local now = clock()
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'E'} end
local waiter, lane = ARGV[2], tonumber(ARGV[3])
local lease, ttl, extra = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local flight, n = tonumber(ARGV[7]), tonumber(ARGV[8])
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - ttl, 'WITHSCORES')
local recovery = num(redis.call('GET', KEYS[4]), nil)
local wait, used_all = 0, {}
for i = 1, n do
  local k, a = 4 + (i - 1) * 5, 8 + (i - 1) * 6
  local c, s, w, l, g = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local kind, weight, cap = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local span, interval = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local used, rate
  if kind == 'd' then rate = cap / interval; used = drain(s, rate, now)
  else used = expire(c, s, g, now) end
  used_all[i] = fmt(used)
  local reserve = 0
  for j = 1, #stale, 2 do
    if now < tonumber(stale[j + 1]) + ttl + extra + span then
      reserve = reserve + cap / num(redis.call('HGET', KEYS[2], stale[j]), 1)
    end
  end
  if recovery and now < recovery + flight + span then reserve = cap end
  local me = waiter .. '|' .. ARGV[a + 2]
  local mine = num(redis.call('ZSCORE', w, me), lane * 4398046511104 + now)
  local ahead = 0
  local queue = redis.call('ZRANGE', w, 0, -1, 'WITHSCORES')
  for j = 1, #queue, 2 do
    local m = queue[j]
    if m ~= me then
      if num(redis.call('HGET', l, m), 0) <= now then
        redis.call('ZREM', w, m); redis.call('HDEL', l, m)
      elseif tonumber(queue[j + 1]) < mine then ahead = ahead + weight_of(m) end
    end
  end
  local d = math.max(num(redis.call('HGET', s, 'paused'), 0) - now, 0)
  local excess = used + ahead + reserve + weight - cap
  if excess > EPS then
    local until_free = lease
    if reserve < cap and kind == 'd' and excess <= used + EPS then until_free = excess / rate
    elseif reserve < cap and kind ~= 'd' then
      local freed, log = 0, redis.call('ZRANGE', c, 0, -1, 'WITHSCORES')
      for j = 1, #log, 2 do
        freed = freed + weight_of(log[j])
        if freed >= excess - EPS then until_free = tonumber(log[j + 1]) - now; break end
      end
    end
    d = math.max(d, until_free, 1)
  end
  wait = math.max(wait, d)
end
for i = 1, n do
  local k, a = 4 + (i - 1) * 5, 8 + (i - 1) * 6
  local c, s, w, l, g = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local me = waiter .. '|' .. ARGV[a + 2]
  if wait > 0 then
    redis.call('ZADD', w, 'NX', lane * 4398046511104 + now, me)
    redis.call('HSET', l, me, fmt(now + lease))
  else
    redis.call('ZREM', w, me); redis.call('HDEL', l, me)
    local weight = tonumber(ARGV[a + 2])
    if ARGV[a + 1] == 'd' then
      redis.call('HSET', s, 'level', fmt(num(redis.call('HGET', s, 'level'), 0) + weight))
    else
      charge(c, s, g, ARGV[a + 6], weight, now + flight + tonumber(ARGV[a + 4]), now)
    end
  end
end
if wait > 0 then return {'0', fmt(wait), fmt(now), unpack(used_all)} end
return {'1', fmt(now), fmt(now), unpack(used_all)}
"""

LAND = COMMON + r"""
-- KEYS: per charge c, s, g.  ARGV: per charge kind, member, sent, weight, interval, guard,
-- capacity, age (ms since the answer arrived: its moment on Redis's clock, whatever the
-- delay before this script runs)
local now = clock()
for i = 1, #KEYS / 3 do
  local c, s, g, a = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], (i - 1) * 8
  local member, sent, weight = ARGV[a + 2], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local interval, guard = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local answer = math.max(now - tonumber(ARGV[a + 8]), sent)
  if ARGV[a + 1] == 'd' then
    local rate = tonumber(ARGV[a + 7]) / interval
    local level = drain(s, rate, now)
    redis.call('HSET', s, 'level', fmt(level + math.min(weight, (answer - sent) * rate)))
  else
    expire(c, s, g, now)
    local ends = math.max(sent + guard, answer) + interval
    if ends > now then charge(c, s, g, member, weight, ends, sent)
    elseif redis.call('ZSCORE', c, member) then  -- it stopped counting already
      redis.call('ZREM', c, member); redis.call('HDEL', g, member)
      redis.call('HSET', s, 'sum', fmt(math.max(num(redis.call('HGET', s, 'sum'), 0)
                                               - weight, 0)))
    end
  end
end
return fmt(now)
"""

WITHDRAW = r"""
-- KEYS: per bucket w, l.  ARGV: per bucket the waiter's member
for i = 1, #KEYS / 2 do
  redis.call('ZREM', KEYS[2 * i - 1], ARGV[i]); redis.call('HDEL', KEYS[2 * i], ARGV[i])
end
return 'ok'
"""

PAUSE = COMMON + r"""
-- KEYS: s of each bucket.  ARGV: milliseconds
local now = clock()
for _, s in ipairs(KEYS) do
  local until_ = math.max(num(redis.call('HGET', s, 'paused'), 0), now + tonumber(ARGV[1]))
  redis.call('HSET', s, 'paused', fmt(until_))
end
return fmt(now)
"""

REFRESH = COMMON + r"""
-- A daemon's unanswered charges, renewed by its heartbeat: KEYS c, s, g.
-- ARGV: ms they count from now, then their members.
local now = clock()
local until_ = now + tonumber(ARGV[1])
for j = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[j])
  if not score or tonumber(score) < until_ then
    charge(KEYS[1], KEYS[2], KEYS[3], ARGV[j], weight_of(ARGV[j]), until_, now)
  end
end
return fmt(now)
"""

OBSERVE = COMMON + r"""
-- KEYS: c, s, g.  ARGV: kind, used, span, capacity, interval, id for correction pieces,
-- when the header arrived (Redis ms, no later than it did), 'header' | 'add', and how
-- long ago it arrived (ms; from now, no earlier than it did: corrections stand a span
-- from then).  Returns '1' when the count was
-- raised. 'add': `used` more units for a span (a piece of its own: pieces add up).
-- The header counts what was granted before it arrived, at most: later grants are
-- not subtracted from it. What exceeds our own charges raises the corrections'
-- profile (`meters.raised_corrections`, the same arithmetic) until a span from then.
local now = clock()
local used = tonumber(ARGV[2])
local added = ARGV[8] == 'add'
if ARGV[1] == 'd' then
  local level = drain(KEYS[2], tonumber(ARGV[4]) / tonumber(ARGV[5]), now)
  if added then used = level + used end
  if used > level + EPS then redis.call('HSET', KEYS[2], 'level', fmt(used)); return '1' end
  return '0'
end
local c, s, g = KEYS[1], KEYS[2], KEYS[3]
local sum = expire(c, s, g, now)
local seen = math.min(tonumber(ARGV[7]), now)
local stands = now - tonumber(ARGV[9]) + tonumber(ARGV[3])
if added then
  if used <= EPS then return '0' end
  redis.call('ZADD', c, stands, '~' .. ARGV[6] .. ':0|' .. fmt(used))
  redis.call('HSET', s, 'sum', fmt(sum + used))
  return '1'
end
local ours, pieces = 0, {}
local log = redis.call('ZRANGE', c, 0, -1, 'WITHSCORES')
for j = 1, #log, 2 do
  local m = log[j]
  if string.sub(m, 1, 1) == '~' then
    pieces[#pieces + 1] = {m, tonumber(log[j + 1]), weight_of(m)}
  elseif num(redis.call('HGET', g, m), math.huge) <= seen then
    ours = ours + weight_of(m)
  end
end
local level, until_ = used - ours, stands
local standing = 0
for _, p in ipairs(pieces) do if p[2] >= until_ then standing = standing + p[3] end end
if level <= standing + EPS then return '0' end
local ends, seen_end = {until_}, {[until_] = true}
for _, p in ipairs(pieces) do
  if not seen_end[p[2]] then seen_end[p[2]] = true; ends[#ends + 1] = p[2] end
end
table.sort(ends)
local levels = {}
for i, e in ipairs(ends) do
  local here = 0
  for _, p in ipairs(pieces) do if p[2] >= e then here = here + p[3] end end
  if e <= until_ then here = math.max(here, level) end
  levels[i] = here
end
levels[#ends + 1] = 0
for _, p in ipairs(pieces) do sum = sum - p[3]; redis.call('ZREM', c, p[1]) end
for i, e in ipairs(ends) do
  local w = levels[i] - levels[i + 1]
  if w > EPS then
    redis.call('ZADD', c, e, '~' .. ARGV[6] .. ':' .. i .. '|' .. fmt(w)); sum = sum + w
  end
end
redis.call('HSET', s, 'sum', fmt(math.max(sum, 0)))
return '1'
"""

HEARTBEAT = COMMON + r"""
-- KEYS: members, members:n, epoch.  ARGV: member, epoch, prune after (ms)
-- Returns 'E' when the epoch is not ours (Redis lost its data), else
-- {now, member, heartbeat, count, ...} for every member.
local now = clock()
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return {'E'} end
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
for _, m in ipairs(gone) do redis.call('ZREM', KEYS[1], m); redis.call('HDEL', KEYS[2], m) end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], redis.call('ZCARD', KEYS[1]))
local out = {fmt(now)}
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for j = 1, #all, 2 do
  out[#out + 1] = all[j]; out[#out + 1] = all[j + 1]
  out[#out + 1] = num(redis.call('HGET', KEYS[2], all[j]), 1) .. ''
end
return out
"""

REJOIN = COMMON + r"""
-- Before a member counts again: KEYS members, members:n, epoch, recovery.
-- ARGV: our epoch, a new epoch, how long ago our outage began (ms), then triples
-- (member, age of its last heartbeat as we saw it (ms), its count) for every member we knew.
-- Returns {epoch, lost ('1' | '0'), now}. When the epoch is not ours, Redis lost its
-- data: the members we knew are put back (stale, so their shares stay reserved) and
-- nothing is granted until what was granted before the outage stopped counting.
local now = clock()
local current = redis.call('GET', KEYS[3])
if current == ARGV[1] then return {current, '0', fmt(now)} end
if not current then redis.call('SET', KEYS[3], ARGV[2]); current = ARGV[2] end
local began = now - tonumber(ARGV[3])
redis.call('SET', KEYS[4], fmt(math.min(num(redis.call('GET', KEYS[4]), began), began)))
for j = 4, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], 'NX', now - tonumber(ARGV[j + 1]), ARGV[j])
  redis.call('HSETNX', KEYS[2], ARGV[j], ARGV[j + 2])
end
return {current, '1', fmt(now)}
"""

PUSH = COMMON + r"""
-- One bucket's own charges, from a member coming back: KEYS c, s, g.
-- ARGV: kind, paused for (ms), level to add, then pairs (member, ms it still counts).
local now = clock()
local pause = tonumber(ARGV[2])
if pause > 0 then
  redis.call('HSET', KEYS[2], 'paused',
             fmt(math.max(num(redis.call('HGET', KEYS[2], 'paused'), 0), now + pause)))
end
if ARGV[1] == 'd' then
  local level = num(redis.call('HGET', KEYS[2], 'level'), 0)
  redis.call('HSET', KEYS[2], 'level', fmt(level + tonumber(ARGV[3])), 'at', fmt(now))
  return fmt(now)
end
expire(KEYS[1], KEYS[2], KEYS[3], now)
for j = 4, #ARGV, 2 do
  charge(KEYS[1], KEYS[2], KEYS[3], ARGV[j], weight_of(ARGV[j]), now + tonumber(ARGV[j + 1]),
         now)
end
return fmt(now)
"""

LEAVE = r"""
-- KEYS: members, members:n.  ARGV: member (a clean stop: nothing of ours is unknown)
redis.call('ZREM', KEYS[1], ARGV[1]); redis.call('HDEL', KEYS[2], ARGV[1])
return 'ok'
"""
