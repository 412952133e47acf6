"""Session state in Redis: the keys, the Lua script that writes them, and the readers.

Layout (``P`` is the configured prefix; ``{...}`` are Redis Cluster hash tags, so the keys
that must live together share a slot):

- ``P sess:{<sid>}:items``  ZSET, score = event time (ms), member = ``offset|item|type``
  (``\\x1f``-separated). Ties in time keep Kafka order through the zero-padded offset.
  Trimmed to the last ``session_max_len`` events.
- ``P sess:{<sid>}:seen``   SET of the event ids applied: a redelivered event is a no-op.
- ``P {pop}:decayed``       ZSET of forward-decayed popularity (weights relative to a landmark).
- ``P {pop}:landmark``      the landmark time (ms) the decayed weights are relative to.
- ``P {pop}:count``         ZSET of all-time event counts per item.
- ``P {pop}:events``        how many distinct events were applied (benchmarks read it).
- ``P cooc:{<item>}``       ZSET of items co-occurring with ``item`` in sessions.

Both session keys get the idle TTL on every write, so idle sessions disappear by themselves.
Every key is read and written by single-key commands or by scripts whose KEYS share a slot, so the
layout works on Redis Cluster as is (see the scripts below for how a batch is written there).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from streamrec.redis_access import AsyncRedis

__all__ = [
    "APPLY_LUA", "FIELD", "POP_LUA", "REC", "SESSION_LUA", "SessionEvent", "cooc_key", "decode_member",
    "half_life_to_tau_ms", "pack", "pop_keys", "read_session", "session_keys",
]


# On one node, one script applies a whole batch atomically: session appends, popularity and
# co-occurrence. Atomicity is what makes the counters exact under redelivery: an event is either
# applied with all its effects, or not at all and then applied later; its id in the session's
# seen set says which. Arguments travel as a few packed strings (records split by \x1e, fields by
# \x1f) rather than one Redis argument per field, which dominated the client-side cost.
#
# Redis Cluster allows a script only the keys passed in KEYS, all in one slot. There the batch is
# written in three steps built from the same Lua pieces (``SessionWriter`` in
# ``streamrec.stream.processor``): SESSION_LUA per session (its two keys share the {<sid>} slot),
# which returns what it applied; POP_LUA once on the {pop} slot, in the same event order as
# APPLY_LUA, so the floats come out identical; and one ZINCRBY per co-occurrence key. Sessions stay
# exact under redelivery; a crash between the steps can drop that batch's counter increments.
#
# Popularity uses forward decay (Cormode et al.): weight exp((t - L) / tau) relative to a
# landmark L, so an increment never touches other items. When weights grow large everything is
# rescaled once and the landmark moves forward. Time is event time: a replay decays as it happened.
_LUA_PARTS = r"""
-- Appends one session's packed (event_id, ts, offset, item, type) records, skipping event ids
-- already seen, and calls on_event(item, ts, before) for each new one; before = the up to
-- `window` members just ahead of it in time (its co-occurrence partners). Trims, refreshes TTLs.
local function append_session(items, seen, packed, max_len, ttl, window, on_event)
  local applied, duplicates = 0, 0
  for rec in string.gmatch(packed, '[^\30]+') do
    local event_id, ts, offset, item, kind = string.match(rec, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
    if redis.call('SADD', seen, event_id) == 1 then
      local member = offset .. '\31' .. item .. '\31' .. kind
      redis.call('ZADD', items, ts, member)
      local rank = redis.call('ZRANK', items, member)
      local before = {}
      if window > 0 and rank > 0 then
        before = redis.call('ZRANGE', items, math.max(0, rank - window), rank - 1)
      end
      on_event(item, ts, before)
      applied = applied + 1
    else
      duplicates = duplicates + 1
    end
  end
  redis.call('ZREMRANGEBYRANK', items, 0, -(max_len + 1))
  redis.call('EXPIRE', items, ttl)
  redis.call('EXPIRE', seen, ttl)
  return applied, duplicates
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
"""

# One node. KEYS: the four {pop} keys, then (items, seen) per session. ARGV: max_len, ttl, cooc
# window, tau (ms), key prefix, then one packed string per session. Co-occurrence keys are derived
# from the prefix inside the script (they depend on what the session already holds), which only a
# single node allows. Returns {applied, duplicates}.
APPLY_LUA = _LUA_PARTS + r"""
local max_len, ttl, window, tau, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local add_popularity = popularity(KEYS[1], KEYS[2], KEYS[3], tau)
local function on_event(item, ts, before)
  for _, m in ipairs(before) do
    local other = item_of(m)
    if other ~= item then
      redis.call('ZINCRBY', prefix .. 'cooc:{' .. item .. '}', 1, other)
      redis.call('ZINCRBY', prefix .. 'cooc:{' .. other .. '}', 1, item)
    end
  end
  add_popularity(item, ts)
end
local applied, duplicates = 0, 0
for k = 1, (#KEYS - 4) / 2 do
  local a, d = append_session(KEYS[3 + 2 * k], KEYS[4 + 2 * k], ARGV[5 + k], max_len, ttl, window, on_event)
  applied, duplicates = applied + a, duplicates + d
end
redis.call('INCRBY', KEYS[4], applied)
return {applied, duplicates}
"""

# Cluster, one session. KEYS: items, seen. ARGV: max_len, ttl, cooc window, packed records.
# Returns {applied, duplicates, one string per applied event: item \31 ts [\31 partner]...}.
SESSION_LUA = _LUA_PARTS + r"""
local out = {0, 0}
local function on_event(item, ts, before)
  local rec = {item, ts}
  for _, m in ipairs(before) do
    local other = item_of(m)
    if other ~= item then rec[#rec + 1] = other end
  end
  out[#out + 1] = table.concat(rec, '\31')
end
out[1], out[2] = append_session(KEYS[1], KEYS[2], ARGV[4], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), on_event)
return out
"""

# Cluster, popularity. KEYS: the four {pop} keys. ARGV: tau (ms), packed (item, ts) records in
# APPLY_LUA's order. Returns how many were added.
POP_LUA = _LUA_PARTS + r"""
local add_popularity = popularity(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]))
local n = 0
for rec in string.gmatch(ARGV[2], '[^\30]+') do
  local item, ts = string.match(rec, '^([^\31]*)\31([^\31]*)$')
  add_popularity(item, ts)
  n = n + 1
end
redis.call('INCRBY', KEYS[4], n)
return n
"""

REC, FIELD = "\x1e", "\x1f"


def session_keys(prefix: str, session_id: str) -> tuple[str, str]:
    return f"{prefix}sess:{{{session_id}}}:items", f"{prefix}sess:{{{session_id}}}:seen"


def pop_keys(prefix: str) -> tuple[str, str, str, str]:
    return tuple(f"{prefix}{{pop}}:{name}" for name in ("decayed", "landmark", "count", "events"))  # type: ignore[return-value]


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
    rows = await client.zrange(items_key, 0, -1, withscores=True)
    return [SessionEvent(*decode_member(m), int(score)) for m, score in rows]


def half_life_to_tau_ms(half_life_s: float) -> float:
    return half_life_s * 1000.0 / math.log(2)


def pack(records: Iterable[Iterable[object]]) -> str:
    """Records of fields as one string for a script argument."""
    return REC.join(FIELD.join(map(str, r)) for r in records)
