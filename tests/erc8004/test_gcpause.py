"""erc8004.gcpause: the collector is off inside a pause and back to its previous
state after the last one ends — nested, across threads, and on errors."""

from __future__ import annotations

import gc
import threading

import pytest

from erc8004.gcpause import gc_paused


@pytest.fixture(autouse=True)
def _restore_gc():
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_pause_restores_an_enabled_collector_even_on_error():
    gc.enable()
    inside: list[bool] = []

    def fail() -> None:
        with gc_paused():
            inside.append(gc.isenabled())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail()
    assert inside == [False]
    assert gc.isenabled()


def test_nested_pauses_reenable_only_at_the_outermost():
    gc.enable()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled():
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_pauses_in_two_threads():
    """Thread A pauses, B pauses, A ends: still paused until B ends."""
    gc.enable()
    a_in, b_in, a_done, b_may_end = (threading.Event() for _ in range(4))
    seen: list[bool] = []

    def a() -> None:
        with gc_paused():
            a_in.set()
            b_in.wait(5)
        a_done.set()

    def b() -> None:
        a_in.wait(5)
        with gc_paused():
            b_in.set()
            a_done.wait(5)
            seen.append(gc.isenabled())
            b_may_end.wait(5)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    a_done.wait(5)
    b_may_end.set()
    for t in threads:
        t.join(5)
    assert seen == [False]
    assert gc.isenabled()
