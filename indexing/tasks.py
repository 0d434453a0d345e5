"""Celery entry points of the indexing queue. Thin: they take ids and call services."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

__all__ = ("dispatch_polls", "poll_chain")


@shared_task(
    name="indexing.tasks.poll_chain",
    soft_time_limit=settings.INDEXING_POLL_TIME_LIMIT - 20,
    time_limit=settings.INDEXING_POLL_TIME_LIMIT,
)
def poll_chain(chain_id: int) -> str:
    """One bounded poll; re-enqueues itself at once while the chain is behind."""
    from .poller import chain_poll

    result = chain_poll(chain_id=chain_id)
    if result.behind:
        poll_chain.apply_async((chain_id,))
    return result.outcome


@shared_task(name="indexing.tasks.dispatch_polls", expires=5)
def dispatch_polls() -> list[int]:
    """Beat's tick: enqueue a poll for every chain that is due."""
    from .services import chains_due_for_poll

    due = chains_due_for_poll()
    for chain_id in due:
        poll_chain.apply_async((chain_id,), expires=60)
    return due
