"""actions/ratelimit.py: GCRA reservations in Redis, shared by whoever asks."""

from __future__ import annotations

import time

from actions.ratelimit import Bucket, bucket_key, rate_block, rate_reserve


def _bucket(name: str, per_second: float, burst: int = 1) -> Bucket:
    return Bucket(bucket_key("test", name, str(time.monotonic_ns())), per_second=per_second, burst=burst)


def test_reservations_are_spaced_by_the_interval():
    bucket = _bucket("a", per_second=2)  # one slot every 0.5 s
    waits = [rate_reserve([bucket], max_wait=5)[1] for _ in range(4)]
    assert waits[0] == 0
    assert [round(w, 1) for w in waits[1:]] == [0.5, 1.0, 1.5]


def test_no_reservation_beyond_the_maximum_wait():
    bucket = _bucket("b", per_second=1)
    assert rate_reserve([bucket], max_wait=0.5) == (True, 0.0)
    reserved, wait = rate_reserve([bucket], max_wait=0.5)
    assert not reserved
    assert 0.9 <= wait <= 1.0
    # Nothing was taken by the refusal: the next slot is still one second after the first.
    assert round(rate_reserve([bucket], max_wait=5)[1], 1) == 1.0


def test_burst_allows_back_to_back_sends():
    bucket = _bucket("c", per_second=1, burst=3)
    assert [rate_reserve([bucket], max_wait=0)[0] for _ in range(4)] == [True, True, True, False]


def test_all_buckets_are_reserved_together():
    fast, slow = _bucket("fast", per_second=100), _bucket("slow", per_second=1)
    assert rate_reserve([fast, slow], max_wait=5)[1] == 0
    _, wait = rate_reserve([fast, slow], max_wait=5)
    assert wait >= 0.9  # the slowest bucket decides


def test_block_pushes_the_next_slot_out():
    bucket = _bucket("d", per_second=1000, burst=1000)
    rate_block(bucket, seconds=3)
    reserved, wait = rate_reserve([bucket], max_wait=1)
    assert not reserved
    assert 2.5 < wait <= 3.01


def test_keys_live_under_the_deployment_prefix_and_hide_secrets():
    from django.conf import settings

    key = bucket_key("tg", "bot", "123456:SECRET-TOKEN-VALUE")
    assert key.startswith(settings.REDIS_KEY_PREFIX + "rl:tg:bot:")
    assert "SECRET" not in key
