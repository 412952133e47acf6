"""Session state in Redis: the keys, the Lua scripts that write them, and the readers.

Layout (``P`` is the configured prefix; ``{...}`` are Redis Cluster hash tags, so the keys
one script touches always share a slot):

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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

__all__ = [
    "FIELD", "REC", "SessionEvent", "SessionScripts", "cooc_key", "decode_member",
    "pack", "pop_keys", "read_session", "session_keys",
]


# Arguments travel as a few packed strings (records split by \x1e, fields by \x1f) rather
# than one Redis argument per field: per-argument encoding in the client dominated the cost.
# Every key is declared in KEYS, so on Redis Cluster a batch can be split by hash slot.

# KEYS: (items, seen) per session. ARGV: max_len, ttl, window, then one packed string per
# session of (event_id, ts, offset, item, type) records. Returns, per event in order, "-" for
# a duplicate, else the items just before it in its session, \x1f-joined (for co-occurrence).
APPEND_LUA = r"""
local max_len, ttl, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for k = 1, #KEYS / 2 do
  local items, seen = KEYS[2 * k - 1], KEYS[2 * k]
  for rec in string.gmatch(ARGV[3 + k], '[^\30]+') do
    local event_id, ts, offset, item, kind = string.match(rec, '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$')
    if redis.call('SADD', seen, event_id) == 1 then
      local member = offset .. '\31' .. item .. '\31' .. kind
      redis.call('ZADD', items, ts, member)
      local rank = redis.call('ZRANK', items, member)
      local before = {}
      if window > 0 and rank > 0 then
        for i, m in ipairs(redis.call('ZRANGE', items, math.max(0, rank - window), rank - 1)) do
          before[i] = string.match(m, '^[^\31]*\31([^\31]*)\31')
        end
      end
      out[#out + 1] = table.concat(before, '\31')
    else
      out[#out + 1] = '-'
    end
  end
  redis.call('ZREMRANGEBYRANK', items, 0, -(max_len + 1))
  redis.call('EXPIRE', items, ttl)
  redis.call('EXPIRE', seen, ttl)
end
return out
"""

# Forward decay (Cormode et al.): weight exp((t - L) / tau) relative to a landmark L, so
# increments never touch other items. When weights grow large, everything is rescaled once
# and the landmark moves forward. Time is event time, so a replay decays as it happened.
# KEYS: the four {pop} keys. ARGV: tau (ms), packed (item, ts) records.
POPULARITY_LUA = r"""
local tau = tonumber(ARGV[1])
local landmark = tonumber(redis.call('GET', KEYS[2]))
local n = 0
for item, ts in string.gmatch(ARGV[2], '([^\31\30]+)\31([^\30]+)') do
  ts = tonumber(ts)
  if landmark == nil then
    landmark = ts
    redis.call('SET', KEYS[2], landmark)
  end
  local x = (ts - landmark) / tau
  if x > 40 then
    redis.call('ZUNIONSTORE', KEYS[1], 1, KEYS[1], 'WEIGHTS', math.exp(-x))
    landmark = ts
    redis.call('SET', KEYS[2], landmark)
    x = 0
  end
  redis.call('ZINCRBY', KEYS[1], math.exp(x), item)
  redis.call('ZINCRBY', KEYS[3], 1, item)
  n = n + 1
end
redis.call('INCRBY', KEYS[4], n)
return n
"""

# KEYS: cooc:{item} keys. ARGV: per key, packed (neighbour, count) records.
COOC_LUA = r"""
for k = 1, #KEYS do
  for other, count in string.gmatch(ARGV[k], '([^\31\30]+)\31([^\30]+)') do
    redis.call('ZINCRBY', KEYS[k], count, other)
  end
end
return #KEYS
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


async def read_session(client: aioredis.Redis, prefix: str, session_id: str) -> list[SessionEvent]:
    """The session's retained events, oldest first (empty if unknown or expired)."""
    items_key, _ = session_keys(prefix, session_id)
    rows = await client.zrange(items_key, 0, -1, withscores=True)
    return [SessionEvent(*decode_member(m), int(score)) for m, score in rows]


@dataclass(frozen=True)
class SessionScripts:
    """The three scripts, registered on one client (redis-py loads them on first use)."""

    append: AsyncScript
    popularity: AsyncScript
    cooc: AsyncScript

    @classmethod
    def register(cls, client: aioredis.Redis) -> SessionScripts:
        return cls(client.register_script(APPEND_LUA), client.register_script(POPULARITY_LUA),
                   client.register_script(COOC_LUA))


def half_life_to_tau_ms(half_life_s: float) -> float:
    return half_life_s * 1000.0 / math.log(2)


def pack(records: Iterable[Iterable[object]]) -> str:
    """Records of fields as one string for a script argument."""
    return REC.join(FIELD.join(map(str, r)) for r in records)


def flatten_cooc(increments: dict[str, dict[str, int]], prefix: str) -> tuple[list[str], list[str]]:
    """KEYS and ARGV for ``COOC_LUA`` from ``{item: {neighbour: count}}``."""
    keys = [cooc_key(prefix, item) for item in increments]
    return keys, [pack(n.items()) for n in increments.values()]


def parse_append_result(reply: Sequence[bytes]) -> list[list[str] | None]:
    """Per event of one APPEND call: None if it was a duplicate, else the items before it."""
    return [None if r == b"-" else (r.decode().split(FIELD) if r else []) for r in reply]
