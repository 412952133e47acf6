"""Session state in Redis: the keys, the Lua script that writes them, and the readers.

Layout (``P`` is the configured prefix; ``{...}`` are Redis Cluster hash tags, so the keys
that must live together share a slot):

- ``P sess:{<sid>}:items``  ZSET, score = event time (ms), member = ``offset|item|type``
  (``\\x1f``-separated). Ties in time keep Kafka order through the zero-padded offset.
  Trimmed to the last ``session_max_len`` events.
- ``P sess:{<sid>}:seen``   ZSET of the event ids applied (score: event time), the last
  ``session_dedup_ids``: the same event published twice is applied once.
- ``P {pop}:decayed``       ZSET of forward-decayed popularity (weights relative to a landmark),
  the ``counter_max_items`` highest.
- ``P {pop}:landmark``      the landmark time (ms) the decayed weights are relative to.
- ``P {pop}:count``         ZSET of all-time event counts per item, the ``counter_max_items`` highest.
- ``P {pop}:events``        how many distinct events were applied (benchmarks read it).
- ``P {pop}:offsets``       HASH ``<topic>:<partition>`` -> the last offset applied: idempotence by
  offset, and where a worker resumes after Redis lost writes (``streamrec.stream.resume``).
- ``P sess:{<sid>}:pos``    on a Redis Cluster only: HASH of the session's last applied offset per
  partition, with the session's TTL (see SESSION_LUA).
- ``P cooc:{<item>}``       ZSET of items co-occurring with ``item`` in sessions, the
  ``cooc_max_partners`` strongest; expires ``cooc_ttl_s`` after its last write, and goes when
  its item leaves ``{pop}:count``.

Both session keys get the idle TTL on every write, so idle sessions disappear by themselves. Every
key family is bounded in size or in time (docs/operations.md, "Memory bounds").
Every key is read and written by single-key commands or by scripts whose KEYS share a slot, so the
layout works on Redis Cluster as is (see the scripts below for how a batch is written there).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streamrec.redis_access import AsyncRedis

__all__ = [
    "APPLY_LUA", "FIELD", "POP_LUA", "REC", "SESSION_LUA", "SessionEvent", "SessionTail", "cooc_key",
    "decode_member", "half_life_to_tau_ms", "offsets_key", "pack", "partition_field", "pop_keys", "read_session",
    "read_sessions", "session_keys", "session_position_key",
]


# On one node, one script applies a whole batch atomically: session appends, popularity and
# co-occurrence, and the partitions' applied offsets. Atomicity is what makes the counters exact: an
# event is applied with all its effects, or not at all. Arguments travel as a few packed strings
# (records split by \x1e, fields by \x1f) rather than one Redis argument per field, which dominated
# the client-side cost.
#
# Idempotence is by partition offset: ``{pop}:offsets`` holds, per topic partition, the last offset
# whose effects are in Redis, written in the same script as those effects. A record at or below it
# is skipped, however old the replay (a session TTL or a dedup window does not matter). It is also
# the position a worker resumes from (``streamrec.stream.resume``): Redis persists its writes about
# once a second, so after a Redis crash the offsets Kafka holds can be ahead of what Redis kept, and
# the worker re-reads from Redis's own. A session's ``seen`` ids catch the same event published twice
# (two offsets), within its last ``session_dedup_ids`` events.
#
# A Redis error on one session (a key of the wrong type, say) must not fail the others: each
# session runs under pcall and a failed one is returned with its error, for the dead-letter topic.
# An out-of-memory refusal can only come before the script's first write, and then fails it whole.
#
# Redis Cluster allows a script only the keys passed in KEYS, all in one slot. There the batch is
# written in three steps built from the same Lua pieces (``SessionWriter`` in
# ``streamrec.stream.processor``): SESSION_LUA per session (its keys share the {<sid>} slot), which
# skips by the session's own offsets and returns what it applied with its co-occurrence partners;
# POP_LUA on the {pop} slot (offsets and popularity of the sessions Redis took, in APPLY_LUA's
# event order, so the floats come out identical); and co-occurrence increments for the events
# POP_LUA found new. Sessions and popularity stay exact; co-occurrence is never counted twice, and a
# crash between the steps can drop that batch's co-occurrence.

# Popularity uses forward decay (Cormode et al.): weight exp((t - L) / tau) relative to a
# landmark L, so an increment never touches other items. When weights grow large everything is
# rescaled once and the landmark moves forward. Time is event time: a replay decays as it happened.
#
# Bounds: a session keeps its last ``max_len`` events and ``max_ids`` ids and expires when idle; the popularity
# sets keep their ``max_items`` most popular items, and an item dropped from the all-time counts
# loses its co-occurrence key; a co-occurrence key keeps its ``max_partners`` strongest partners and
# expires when not written for ``cooc_ttl`` seconds.
_LUA_PARTS = r"""
local function check_zset(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= 'zset' then
    error({err = 'WRONGTYPE ' .. key .. ' holds a ' .. kind .. ', not a sorted set'})
  end
end

-- Appends one session's packed (event_id, ts, offset, item, type, tp) records, skipping those at or
-- below their partition's applied offset (marks[tp], where given) and event ids already seen, and
-- calls on_event(item, ts, offset, tp, before) for each new one; before = the up to `window` members
-- just ahead of it in time (its co-occurrence partners), and on_repeat(offset), if given, for an
-- event id seen before at another offset. Trims, refreshes TTLs. Returns the counts
-- and the session's last offset per tp (records of a partition come in offset order).
local function append_session(items, seen, packed, max_len, max_ids, ttl, window, marks, on_event, on_repeat)
  local applied, duplicates, last, touched = 0, 0, {}, false
  for rec in string.gmatch(packed, '[^\30]+') do
    local event_id, ts, offset, item, kind, tp = string.match(rec, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
    last[tp] = offset
    local mark = marks[tp]
    if mark ~= nil and tonumber(offset) <= mark then
      duplicates = duplicates + 1
    else
      if not touched then  -- refused before anything of this session is written
        check_zset(items)
        check_zset(seen)
        touched = true
      end
      if redis.call('ZADD', seen, 'NX', ts, event_id) == 0 then
        duplicates = duplicates + 1
        if on_repeat then on_repeat(offset) end
      else
        local member = offset .. '\31' .. item .. '\31' .. kind
        redis.call('ZADD', items, ts, member)
        local rank = redis.call('ZRANK', items, member)
        local before = {}
        if window > 0 and rank > 0 then
          before = redis.call('ZRANGE', items, math.max(0, rank - window), rank - 1)
        end
        on_event(item, ts, offset, tp, before)
        applied = applied + 1
      end
    end
  end
  if touched then
    redis.call('ZREMRANGEBYRANK', items, 0, -(max_len + 1))
    redis.call('ZREMRANGEBYRANK', seen, 0, -(max_ids + 1))
    redis.call('EXPIRE', items, ttl)
    redis.call('EXPIRE', seen, ttl)
  end
  return applied, duplicates, last
end

local function item_of(member)
  return string.match(member, '^[^\31]*\31([^\31]*)\31')
end

-- Returns add(item, ts): one event into the forward-decayed and the all-time popularity.
local function popularity(decayed, landmark_key, count, tau)
  local landmark = tonumber(redis.call('GET', landmark_key))
  return function(item, ts)
    ts = tonumber(ts)
    if landmark == nil then
      landmark = ts
      redis.call('SET', landmark_key, landmark)
    end
    local x = (ts - landmark) / tau
    if x > 40 then
      redis.call('ZUNIONSTORE', decayed, 1, decayed, 'WEIGHTS', math.exp(-x))
      landmark = ts
      redis.call('SET', landmark_key, landmark)
      x = 0
    end
    redis.call('ZINCRBY', decayed, math.exp(x), item)
    redis.call('ZINCRBY', count, 1, item)
  end
end

-- Keeps the max_items most popular items of each popularity set; returns the items dropped from the
-- all-time counts (their co-occurrence keys go with them).
local function trim_popularity(decayed, count, max_items)
  local dropped = {}
  local extra = redis.call('ZCARD', count) - max_items
  if extra > 0 then
    dropped = redis.call('ZRANGE', count, 0, extra - 1)
    redis.call('ZREMRANGEBYRANK', count, 0, extra - 1)
  end
  extra = redis.call('ZCARD', decayed) - max_items
  if extra > 0 then
    redis.call('ZREMRANGEBYRANK', decayed, 0, extra - 1)
  end
  return dropped
end

-- The batch's partitions, from ARGV[first..]: (name, expected, last) per partition, where expected is
-- the last offset this worker applied there ('' if none) and last the batch's highest offset there.
-- Returns marks (tp index -> applied offset, absent if none), or nil and a rollback reply when Redis
-- holds less than the worker applied: Redis lost writes, the worker must re-read from marks.
local function read_marks(offsets, first, n)
  local marks = {}
  for i = 1, n do
    local name, expected = ARGV[first + 3 * (i - 1)], ARGV[first + 3 * (i - 1) + 1]
    local mark = tonumber(redis.call('HGET', offsets, name))
    if expected ~= '' and (mark == nil or mark < tonumber(expected)) then
      return nil, {1, name, mark or -1, expected}
    end
    marks[tostring(i)] = mark
  end
  return marks
end

local function write_marks(offsets, first, n, marks)
  for i = 1, n do
    local last = tonumber(ARGV[first + 3 * (i - 1) + 2])
    local mark = marks[tostring(i)]
    if mark == nil or last > mark then
      redis.call('HSET', offsets, ARGV[first + 3 * (i - 1)], string.format('%d', last))
    end
  end
end

local function message_of(err)
  if type(err) == 'table' then return tostring(err.err) end
  return tostring(err)
end
"""

# One node. KEYS: the four {pop} keys, {pop}:offsets, then (items, seen) per session. ARGV: max_len,
# ttl, cooc window, tau (ms), key prefix, max_items, max_partners, cooc ttl, max_ids, the number of partitions
# n, n x (partition, expected, last), then one packed string per session. Co-occurrence keys are
# derived from the prefix inside the script (they depend on what the session already holds), which
# only a single node allows. Returns {0, applied, duplicates, failed session index, its error, ...},
# or the rollback reply {1, partition, applied offset in Redis, expected}.
APPLY_LUA = _LUA_PARTS + r"""
local max_len, ttl, window, tau, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local max_items, max_partners, cooc_ttl, max_ids = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local n = tonumber(ARGV[10])
local marks, rollback = read_marks(KEYS[5], 11, n)
if marks == nil then return rollback end
local add_popularity = popularity(KEYS[1], KEYS[2], KEYS[3], tau)
local touched = {}
local function on_event(item, ts, offset, tp, before)
  for _, m in ipairs(before) do
    local other = item_of(m)
    if other ~= item then
      local a, b = prefix .. 'cooc:{' .. item .. '}', prefix .. 'cooc:{' .. other .. '}'
      redis.call('ZINCRBY', a, 1, other)
      redis.call('ZINCRBY', b, 1, item)
      touched[a], touched[b] = true, true
    end
  end
  add_popularity(item, ts)
end
local reply = {0, 0, 0}
local first_session = 11 + 3 * n
for k = 1, (#KEYS - 5) / 2 do
  local ok, a, d = pcall(append_session, KEYS[4 + 2 * k], KEYS[5 + 2 * k], ARGV[first_session + k - 1], max_len, max_ids, ttl, window, marks, on_event)
  if ok then
    reply[2], reply[3] = reply[2] + a, reply[3] + d
  else
    local message = message_of(a)
    if string.sub(message, 1, 3) == 'OOM' then return redis.error_reply(message) end
    reply[#reply + 1] = k
    reply[#reply + 1] = message
  end
end
for key in pairs(touched) do
  if redis.call('ZCARD', key) > max_partners then
    redis.call('ZREMRANGEBYRANK', key, 0, -(max_partners + 1))
  end
  redis.call('EXPIRE', key, cooc_ttl)
end
for _, item in ipairs(trim_popularity(KEYS[1], KEYS[3], max_items)) do
  redis.call('DEL', prefix .. 'cooc:{' .. item .. '}')
end
write_marks(KEYS[5], 11, n, marks)
redis.call('INCRBY', KEYS[4], reply[2])
return reply
"""

# Cluster, one session. KEYS: items, seen, pos. ARGV: max_len, ttl, cooc window, max_ids, packed records, then
# the partition names by tp index. ``pos`` (a hash in the session's slot, with its TTL) holds the
# session's own last offset per partition, as ``{pop}:offsets`` does for the whole batch on one node:
# the two live in different slots, so neither can stand for the other.
# Returns {applied, duplicates, the offsets of repeated event ids (packed), then one string per applied
# event: item \31 offset \31 tp [\31 partner]...}.
SESSION_LUA = _LUA_PARTS + r"""
local marks = {}
for i = 6, #ARGV do marks[tostring(i - 5)] = tonumber(redis.call('HGET', KEYS[3], ARGV[i])) end
local out, repeats = {0, 0, ''}, {}
local function on_event(item, ts, offset, tp, before)
  local rec = {item, offset, tp}
  for _, m in ipairs(before) do
    local other = item_of(m)
    if other ~= item then rec[#rec + 1] = other end
  end
  out[#out + 1] = table.concat(rec, '\31')
end
local function on_repeat(offset) repeats[#repeats + 1] = offset end
local last
out[1], out[2], last = append_session(KEYS[1], KEYS[2], ARGV[5], tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[2]), tonumber(ARGV[3]), marks, on_event, on_repeat)
out[3] = table.concat(repeats, '\31')
for tp, offset in pairs(last) do
  redis.call('HSET', KEYS[3], ARGV[5 + tonumber(tp)], string.format('%d', tonumber(offset)))
end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[2]))
return out
"""

# Cluster, popularity and offsets. KEYS: the four {pop} keys, {pop}:offsets. ARGV: tau (ms),
# max_items, n partitions, n x (partition, expected, last), then packed (item, ts, offset, tp)
# records in APPLY_LUA's order, less those of refused sessions and repeated event ids. Adds the records above their partition's applied offset. Returns
# {0, added, the applied offset before the batch per partition (-1: none), then the items dropped
# from the counts}, or the rollback reply as APPLY_LUA does.
POP_LUA = _LUA_PARTS + r"""
local n = tonumber(ARGV[3])
local marks, rollback = read_marks(KEYS[5], 4, n)
if marks == nil then return rollback end
local add_popularity = popularity(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]))
local added = 0
for rec in string.gmatch(ARGV[4 + 3 * n], '[^\30]+') do
  local item, ts, offset, tp = string.match(rec, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
  local mark = marks[tp]
  if mark == nil or tonumber(offset) > mark then
    add_popularity(item, ts)
    added = added + 1
  end
end
redis.call('INCRBY', KEYS[4], added)
local reply = {0, added}
for i = 1, n do reply[#reply + 1] = marks[tostring(i)] or -1 end
for _, item in ipairs(trim_popularity(KEYS[1], KEYS[3], tonumber(ARGV[2]))) do reply[#reply + 1] = item end
write_marks(KEYS[5], 4, n, marks)
return reply
"""

REC, FIELD = "\x1e", "\x1f"


def session_keys(prefix: str, session_id: str) -> tuple[str, str]:
    return f"{prefix}sess:{{{session_id}}}:items", f"{prefix}sess:{{{session_id}}}:seen"


def session_position_key(prefix: str, session_id: str) -> str:
    """On a cluster only: the session's last applied offset per partition (SESSION_LUA)."""
    return f"{prefix}sess:{{{session_id}}}:pos"


def pop_keys(prefix: str) -> tuple[str, str, str, str]:
    return tuple(f"{prefix}{{pop}}:{name}" for name in ("decayed", "landmark", "count", "events"))  # type: ignore[return-value]


def offsets_key(prefix: str) -> str:
    """The hash of applied offsets: field ``<topic>:<partition>``, value the last offset in Redis."""
    return f"{prefix}{{pop}}:offsets"


def partition_field(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def cooc_key(prefix: str, item_id: str) -> str:
    return f"{prefix}cooc:{{{item_id}}}"


def decode_member(member: str | bytes) -> tuple[str, str]:
    """``(item_id, event_type)`` of a stored member."""
    text = member.decode() if isinstance(member, bytes) else member
    _, item_id, event_type = text.split(FIELD, 2)
    return item_id, event_type


@dataclass(frozen=True, slots=True)
class SessionEvent:
    item_id: str
    event_type: str
    timestamp: int


async def read_session(client: AsyncRedis, prefix: str, session_id: str) -> list[SessionEvent]:
    """The session's retained events, oldest first (empty if unknown or expired)."""
    items_key, _ = session_keys(prefix, session_id)
    return [SessionEvent(*decode_member(m), int(score))
            for m, score in await client.zrange(items_key, 0, -1, withscores=True)]


@dataclass(frozen=True, slots=True)
class SessionTail:
    """A session as the server reads it: its retained items and their times, oldest first, without the
    event types (the ranker never sees them). Two lists, not an object per event: on every request, the
    decoding is a fraction of what ``SessionEvent``s cost (``streamrec bench session-reads``)."""

    item_ids: list[str]
    timestamps: list[int]  # epoch milliseconds


async def read_sessions(client: AsyncRedis, prefix: str, session_ids: Sequence[str]) -> list[SessionTail]:
    """The ``SessionTail`` of each id (empty if unknown or expired), in one round trip: a pipeline, not a
    transaction (each read stands alone, and a Redis Cluster splits the pipeline by slot)."""
    keys = [session_keys(prefix, session_id)[0] for session_id in session_ids]
    if len(keys) == 1:
        return [_tail(await client.zrange(keys[0], 0, -1, withscores=True))]
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.zrange(key, 0, -1, withscores=True)
        return [_tail(rows) for rows in await pipe.execute()]


def _tail(rows: Sequence[tuple[str | bytes, float]]) -> SessionTail:
    return SessionTail([(m.decode() if isinstance(m, bytes) else m).split(FIELD, 2)[1] for m, _ in rows],
                       [int(score) for _, score in rows])


def half_life_to_tau_ms(half_life_s: float) -> float:
    return half_life_s * 1000.0 / math.log(2)


def pack(records: Iterable[Iterable[object]]) -> str:
    """Records of fields as one string for a script argument."""
    return REC.join(FIELD.join(map(str, r)) for r in records)
