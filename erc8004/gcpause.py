"""Pause Python's cyclic garbage collector around a bounded burst of allocation.

Why: an indexer poll allocates hundreds of thousands of short-lived objects (decoded
logs, model instances, COPY lines). Each allocation burst triggers the cyclic
collector, and its full passes walk the whole heap (Django, web3, every loaded
module: about a million objects) — 0.53 s of a 3.3 s poll of 20,517 events, to free
70 objects (bench/ingest.py, docs/benchmarks.md). Those objects are freed by
reference counting as soon as a batch is done; the few cycles (tracebacks, mostly)
are collected by the next ordinary pass after the pause, so memory stays bounded by
one poll (the benchmark's peak RSS did not change).

Re-entrant and thread-safe: the collector is re-enabled when the last pause ends, and
only if it was enabled when the first began (a process that disabled it keeps it off).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ("gc_paused",)

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
