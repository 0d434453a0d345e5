"""Rate limits shared by every worker process, through Redis.

A generic cell-rate algorithm (GCRA) per bucket, evaluated in one Lua script so a
send reserves a slot in *all* its buckets at once (Telegram: the bot's global
bucket and the chat's bucket) atomically, whichever worker or host it runs on.
Time is Redis's own clock (``TIME``), so worker clocks may disagree.

A reservation answers "you may send in *w* seconds". If ``w`` is within the
caller's ``max_wait`` the slot is reserved and the caller sleeps ``w`` and sends;
otherwise nothing is reserved and the caller reschedules the delivery (no attempt
spent) — so a burst to one chat is paced instead of being refused, and no slot is
held by a sender that went away.

``rate_block`` pushes a bucket's next slot out, for a receiver's explicit "retry
after N seconds" (Telegram's 429 ``parameters.retry_after``): every delivery to that
chat then waits, not only the one that was refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

from erc8004.queues import redis_client

__all__ = ("Bucket", "bucket_key", "rate_block", "rate_reserve")


@dataclass(frozen=True)
class Bucket:
    key: str  # full Redis key (see bucket_key)
    per_second: float
    burst: int = 1  # sends allowed back to back before pacing starts

    @property
    def interval_ms(self) -> int:
        return max(1, round(1000.0 / self.per_second))

    @property
    def tolerance_ms(self) -> int:
        return (max(1, self.burst) - 1) * self.interval_ms


def bucket_key(*parts: str) -> str:
    """``<REDIS_KEY_PREFIX>rl:<parts…>``; long or secret parts are hashed."""
    safe = [p if len(p) <= 64 and p.replace("-", "").replace("_", "").isalnum() else _digest(p) for p in parts]
    return f"{settings.REDIS_KEY_PREFIX}rl:" + ":".join(safe)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]


# KEYS: buckets. ARGV[1]: max wait (ms); then per bucket: interval (ms), tolerance (ms).
# Returns {reserved (0/1), wait (ms)}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_wait = tonumber(ARGV[1])
local send_at = now
local tats = {}
for i, key in ipairs(KEYS) do
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat
  if tat - tolerance > send_at then send_at = tat - tolerance end
end
local wait = send_at - now
if wait > max_wait then return {0, wait} end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if tat < send_at then tat = send_at end
  local new_tat = tat + interval
  redis.call('SET', key, new_tat, 'PX', math.max(1000, new_tat - now + 1000))
end
return {1, wait}
"""

# KEYS[1]: bucket. ARGV: block (ms), tolerance (ms). Nothing may be sent for `block` ms.
_BLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local target = now + tonumber(ARGV[1]) + tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if target > tat then
  redis.call('SET', KEYS[1], target, 'PX', math.max(1000, target - now + 1000))
end
return 1
"""


def rate_reserve(buckets: Sequence[Bucket], *, max_wait: float) -> tuple[bool, float]:
    """Reserve one send in every bucket. Returns ``(reserved, wait_seconds)``: when
    reserved, send after ``wait_seconds``; when not, nothing was taken and the first
    slot is ``wait_seconds`` away."""
    if not buckets:
        return True, 0.0
    args: list[int] = [int(max_wait * 1000)]
    for bucket in buckets:
        args += [bucket.interval_ms, bucket.tolerance_ms]
    client = redis_client()
    reserved, wait_ms = client.register_script(_RESERVE)(keys=[b.key for b in buckets], args=args, client=client)
    return bool(reserved), max(0, int(wait_ms)) / 1000.0


def rate_block(bucket: Bucket, *, seconds: float) -> None:
    client = redis_client()
    client.register_script(_BLOCK)(keys=[bucket.key], args=[int(seconds * 1000), bucket.tolerance_ms], client=client)
