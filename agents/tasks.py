"""Celery entry points of the agents room (queue ``indexing``: they are part of
building the read model). Thin: they take ids and call services; the rows carry the
state, so a lost or duplicated message costs nothing (agents/services.py)."""

from __future__ import annotations

import logging

from celery import shared_task

__all__ = (
    "enqueue_file_fetches",
    "fetch_feedback_file",
    "fetch_files",
    "fetch_registration_file",
    "refetch_due_files",
    "sweep_pending_files",
)

logger = logging.getLogger("erc8004.agents.tasks")

# Three IPFS gateways at a 10 s total cap each, plus parsing and two writes.
_FETCH_SOFT_LIMIT = 60
_FETCH_HARD_LIMIT = 90


@shared_task(
    name="agents.tasks.fetch_registration_file", soft_time_limit=_FETCH_SOFT_LIMIT, time_limit=_FETCH_HARD_LIMIT
)
def fetch_registration_file(agent_pk: int) -> str:
    from .services import registration_file_fetch

    outcome = registration_file_fetch(agent_pk=agent_pk)
    if outcome.retry_in is not None:
        fetch_registration_file.apply_async((agent_pk,), countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="agents.tasks.fetch_feedback_file", soft_time_limit=_FETCH_SOFT_LIMIT, time_limit=_FETCH_HARD_LIMIT)
def fetch_feedback_file(feedback_pk: int) -> str:
    from .services import feedback_file_fetch

    outcome = feedback_file_fetch(feedback_pk=feedback_pk)
    if outcome.retry_in is not None:
        fetch_feedback_file.apply_async((feedback_pk,), countdown=outcome.retry_in)
    return outcome.status


# Files are fetched in batches of this many per message: a backfill of thousands of
# agents must not cost the indexer one broker round trip per file (it once did: 15 s
# of a 26 s batch, bench/ingest.py), while one message still finishes in minutes.
FETCH_BATCH = 50


@shared_task(name="agents.tasks.fetch_files", soft_time_limit=600, time_limit=660)
def fetch_files(agent_pks: list[int], feedback_pks: list[int]) -> int:
    """Fetch a batch of pending files; a file that needs a retry gets its own message."""
    from .services import feedback_file_fetch, registration_file_fetch

    for pk in agent_pks:
        outcome = registration_file_fetch(agent_pk=pk)
        if outcome.retry_in is not None:
            fetch_registration_file.apply_async((pk,), countdown=outcome.retry_in)
    for pk in feedback_pks:
        outcome = feedback_file_fetch(feedback_pk=pk)
        if outcome.retry_in is not None:
            fetch_feedback_file.apply_async((pk,), countdown=outcome.retry_in)
    return len(agent_pks) + len(feedback_pks)


def enqueue_file_fetches(*, agent_pks: list[int], feedback_pks: list[int]) -> None:
    """Send the fetch messages (in batches) for rows already marked pending. A broker
    failure is logged, not raised: the rows are in PostgreSQL and the sweeper sends
    them later."""
    try:
        for start in range(0, len(agent_pks), FETCH_BATCH):
            fetch_files.delay(agent_pks[start : start + FETCH_BATCH], [])
        for start in range(0, len(feedback_pks), FETCH_BATCH):
            fetch_files.delay([], feedback_pks[start : start + FETCH_BATCH])
    except Exception:  # the broker is down: the sweeper will find the pending rows
        logger.warning("could not enqueue file fetches; the sweeper will retry them", exc_info=True)


@shared_task(name="agents.tasks.refetch_due_files", expires=60)
def refetch_due_files() -> int:
    """Beat: mark files due for a re-fetch pending and enqueue them (bounded batch)."""
    from .services import files_refetch_due

    agents, feedback = files_refetch_due()
    enqueue_file_fetches(agent_pks=agents, feedback_pks=feedback)
    return len(agents) + len(feedback)


@shared_task(name="agents.tasks.sweep_pending_files", expires=30)
def sweep_pending_files() -> int:
    """Beat: re-enqueue fetches whose message was lost (agents/services.py files_sweep)."""
    from .services import files_sweep

    agents, feedback = files_sweep()
    enqueue_file_fetches(agent_pks=agents, feedback_pks=feedback)
    return len(agents) + len(feedback)
