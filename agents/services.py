"""Registration and feedback files: when to fetch them, fetching, and storing what
was found. Tasks (agents/tasks.py), receivers and the admin call these.

The row is the truth, the Celery message only a nudge (DESIGN.md): scheduling writes
``pending`` (with ``next_attempt_at``) to PostgreSQL first and then enqueues; a lost
message is found again by :func:`files_sweep`. A fetch may run twice (a duplicate
message, a sweep racing a slow worker): it only writes if the row is still pending
for the same URI and the same request (``requested_at`` is the generation token), so
a late or duplicate fetch can never overwrite a newer state.

Policy:

* a new URI clears what the agent showed from the old file at once (a stale name
  under a new URI is worse than no name while the new file is fetched);
* transient failures (timeout, connection error, 5xx, 408, 429) are retried after
  ``FILE_FETCH_RETRY_DELAYS``; permanent ones (4xx, blocked address, not JSON, bad
  schema, too large) are not;
* http(s) files are read again every ``FILE_REFETCH_INTERVAL`` (they can change
  without an on-chain event); failed http(s)/ipfs files too (servers come back);
  ipfs and data: files that were read are immutable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from eth_utils import keccak

from erc8004.bulk import bulk_insert, bulk_update, instance_fast

from .feedback_files import feedback_file_parse, feedback_hash_status
from .files import FetchedFile, FileFetchError, FileUnsupported, file_fetch, uri_scheme
from .jsondoc import text_clean
from .models import Agent, Feedback, FeedbackFile, FileStatus, RegistrationFile
from .models import FetchedFile as FetchedFileRow
from .registration import ParseError, registration_backlink, registration_parse

__all__ = (
    "FetchOutcome",
    "feedback_file_fetch",
    "feedback_files_schedule",
    "files_refetch_due",
    "files_sweep",
    "registration_file_fetch",
    "registration_files_schedule",
)

logger = logging.getLogger("erc8004.agents.files")

# What an agent row shows from its file; cleared when the URI changes or the file is invalid.
AGENT_FILE_FIELDS = {
    "name": "",
    "description": "",
    "image": "",
    "active": None,
    "x402_support": None,
    "supported_trust": [],
    "services": [],
    "has_mcp": False,
    "has_a2a": False,
    "has_web": False,
    "registrations_backlink": None,
}
_CONTENT_RESET = {
    "fetched_at": None,
    "source_url": "",
    "content_type": "",
    "size": None,
    "content_hash": "",
    "raw": "",
    "parsed": None,
}
_MUTABLE_SCHEMES = ("http", "https")
_REFETCHABLE_FAILURES = ("http", "https", "ipfs")


@dataclass(frozen=True)
class FetchOutcome:
    """What one fetch run did: ``ok``, ``error``, ``unsupported``, ``retry`` (a
    transient failure, again in ``retry_in`` seconds) or ``skipped`` (nothing to do:
    not pending any more, or superseded while fetching)."""

    status: str
    retry_in: int | None = None
    reason: str = ""


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


#
# Scheduling
#


def registration_files_schedule(
    *, agent_pks: Iterable[int], force: bool = False, now: datetime | None = None
) -> list[int]:
    """Make each agent's file row be about its current URI; return the agents to fetch.

    Only agents whose URI differs from the row's (or that have no row) are touched,
    unless ``force`` (the admin's "re-fetch"). An agent without a URI gets an
    ``unsupported`` row and nothing to fetch.
    """
    now = _now(now)
    pks = sorted(set(agent_pks))
    if not pks:
        return []
    to_fetch: list[int] = []
    cleared: list[int] = []
    with transaction.atomic():
        agents = dict(Agent.objects.filter(pk__in=pks).values_list("pk", "agent_uri"))
        rows = {r.pk: r for r in RegistrationFile.objects.select_for_update().filter(pk__in=list(agents))}
        new_rows, changed_rows = [], []
        for pk, uri in agents.items():
            row = rows.get(pk)
            if row is not None and row.uri == uri and not force:
                continue
            if row is None:
                row = instance_fast(RegistrationFile, {"agent_id": pk})
                new_rows.append(row)
            else:
                changed_rows.append(row)
                if row.uri != uri:
                    cleared.append(pk)
                    for name, value in _CONTENT_RESET.items():
                        setattr(row, name, value)
            row.uri = uri
            row.attempts = 0
            row.error = ""
            row.requested_at = now
            row.next_refetch_at = None
            if uri.strip():
                row.status, row.next_attempt_at = FileStatus.PENDING, now
                to_fetch.append(pk)
            else:
                row.status, row.next_attempt_at = FileStatus.UNSUPPORTED, None
                row.error = "the agent has no URI"
        bulk_insert(new_rows)
        fields = ["uri", "status", "error", "attempts", "requested_at", "next_attempt_at", "next_refetch_at"]
        bulk_update(changed_rows, [*fields, *_CONTENT_RESET])
        if cleared:
            Agent.objects.filter(pk__in=cleared).update(**AGENT_FILE_FIELDS)
    return to_fetch


def feedback_files_schedule(
    *,
    feedback_pks: Iterable[int],
    force: bool = False,
    now: datetime | None = None,
    known_uris: dict[int, str] | None = None,
) -> list[int]:
    """Create pending rows for feedback with a ``feedbackURI`` (a feedback's URI never
    changes); return the feedback to fetch. ``force`` re-fetches existing rows.

    ``known_uris`` (pk -> URI, for every pk) spares reading the URIs back: the
    indexer passes the feedback it has just inserted in the same transaction."""
    now = _now(now)
    pks = sorted(set(feedback_pks))
    if not pks:
        return []
    with transaction.atomic():
        if known_uris is not None:
            uris = {pk: known_uris[pk] for pk in pks if known_uris[pk]}
        else:
            uris = dict(Feedback.objects.filter(pk__in=pks).exclude(feedback_uri="").values_list("pk", "feedback_uri"))
        existing = set(FeedbackFile.objects.filter(pk__in=list(uris)).values_list("pk", flat=True))
        pending = {"status": FileStatus.PENDING, "attempts": 0, "error": "", "requested_at": now}
        bulk_insert(
            [
                instance_fast(FeedbackFile, {"feedback_id": pk, "uri": uri, "next_attempt_at": now, **pending})
                for pk, uri in uris.items()
                if pk not in existing
            ]
        )
        to_fetch = [pk for pk in uris if pk not in existing]
        if force and existing:
            FeedbackFile.objects.filter(pk__in=existing).update(next_attempt_at=now, next_refetch_at=None, **pending)
            to_fetch.extend(existing)
    return sorted(to_fetch)


def _raw_text(content: bytes) -> str:
    return text_clean(content.decode("utf-8", errors="replace"))


def _fetch(row: FetchedFileRow) -> tuple[FetchedFile | None, FileFetchError | None]:
    try:
        return file_fetch(row.uri), None
    except FileFetchError as exc:
        return None, exc


def _locked_if_current(model: type[FetchedFileRow], pk: int, uri: str, token: datetime | None) -> Any:
    """The row, locked, if it is still the same pending request; else None."""
    row = model.objects.select_for_update().filter(pk=pk).first()
    if row is None or row.status != FileStatus.PENDING or row.uri != uri or row.requested_at != token:
        return None
    return row


def _apply_failure(row: FetchedFileRow, error: FileFetchError, now: datetime) -> FetchOutcome:
    """Record a failed fetch: retry transient failures on the ladder, else give up
    until the re-fetch schedule (http(s)/ipfs) or for good (unsupported, data:)."""
    delays = settings.FILE_FETCH_RETRY_DELAYS
    row.attempts += 1
    row.error = error.reason[:2000]
    if error.retryable and row.attempts <= len(delays):
        delay = delays[row.attempts - 1]
        row.next_attempt_at = now + timedelta(seconds=delay)
        row.save(update_fields=["attempts", "error", "next_attempt_at", "updated_at"])
        return FetchOutcome("retry", retry_in=delay, reason=row.error)
    row.status = FileStatus.UNSUPPORTED if isinstance(error, FileUnsupported) else FileStatus.ERROR
    row.next_attempt_at = None
    refetch = row.status == FileStatus.ERROR and uri_scheme(row.uri) in _REFETCHABLE_FAILURES
    row.next_refetch_at = now + timedelta(seconds=settings.FILE_REFETCH_INTERVAL) if refetch else None
    row.save(update_fields=["attempts", "error", "status", "next_attempt_at", "next_refetch_at", "updated_at"])
    return FetchOutcome(row.status, reason=row.error)


def _store_content(row: FetchedFileRow, fetched: FetchedFile, now: datetime) -> None:
    row.attempts += 1
    row.fetched_at = now
    row.source_url = fetched.source_url[:2000]
    row.content_type = fetched.content_type[:200]
    row.size = len(fetched.content)
    row.content_hash = "0x" + keccak(fetched.content).hex()
    row.raw = _raw_text(fetched.content)
    row.next_attempt_at = None
    scheme = uri_scheme(row.uri)
    row.next_refetch_at = (
        now + timedelta(seconds=settings.FILE_REFETCH_INTERVAL) if scheme in _MUTABLE_SCHEMES else None
    )


def _run(
    model: type[FetchedFileRow],
    pk: int,
    store: Callable[[Any, FetchedFile, datetime], FetchOutcome],
    now: datetime | None,
) -> FetchOutcome:
    row = model.objects.filter(pk=pk).first()
    if row is None or row.status != FileStatus.PENDING:
        return FetchOutcome("skipped")
    uri, token = row.uri, row.requested_at
    fetched, error = _fetch(row)  # outside any transaction: network time holds no lock
    now = _now(now)
    with transaction.atomic():
        current = _locked_if_current(model, pk, uri, token)
        if current is None:
            return FetchOutcome("skipped", reason="superseded while fetching")
        if error is not None:
            outcome = _apply_failure(current, error, now)
        else:
            assert fetched is not None
            _store_content(current, fetched, now)
            outcome = store(current, fetched, now)
    logger.info("%s %s %s: %s %s", model.__name__, pk, uri[:100], outcome.status, outcome.reason)
    return outcome


def _store_registration(row: RegistrationFile, fetched: FetchedFile, now: datetime) -> FetchOutcome:
    agent = Agent.objects.only("chain_id", "identity_address", "agent_id").get(pk=row.pk)
    result = registration_parse(fetched.content)
    if isinstance(result, ParseError):
        row.status, row.error, row.parsed = FileStatus.ERROR, result.reason[:2000], None
        summary = dict(AGENT_FILE_FIELDS)  # what the agent showed is not what the file says any more
    else:
        row.status, row.error, row.parsed = FileStatus.OK, "", result.as_json()
        summary = {
            "name": result.name,
            "description": result.description,
            "image": result.image,
            "active": result.active,
            "x402_support": result.x402_support,
            "supported_trust": result.supported_trust,
            "services": result.services_summary,
            "has_mcp": result.has_mcp,
            "has_a2a": result.has_a2a,
            "has_web": result.has_web,
            "registrations_backlink": registration_backlink(
                result, chain_id=agent.chain_id, identity_address=agent.identity_address, agent_id=int(agent.agent_id)
            ),
        }
    if row.status == FileStatus.ERROR and uri_scheme(row.uri) in _REFETCHABLE_FAILURES:
        row.next_refetch_at = now + timedelta(seconds=settings.FILE_REFETCH_INTERVAL)
    row.save()
    Agent.objects.filter(pk=row.pk).update(**summary)  # only these columns: the projector owns the rest
    return FetchOutcome(row.status, reason=row.error)


def _store_feedback(row: FeedbackFile, fetched: FetchedFile, now: datetime) -> FetchOutcome:
    feedback_hash = Feedback.objects.filter(pk=row.pk).values_list("feedback_hash", flat=True).first() or ""
    row.hash_status = feedback_hash_status(data=fetched.content, feedback_hash=feedback_hash)
    result = feedback_file_parse(fetched.content)
    if isinstance(result, ParseError):
        row.status, row.error, row.parsed = FileStatus.ERROR, result.reason[:2000], None
        row.text, row.mcp, row.a2a, row.oasf, row.proof_of_payment = "", None, None, None, None
        if uri_scheme(row.uri) in _REFETCHABLE_FAILURES:
            row.next_refetch_at = now + timedelta(seconds=settings.FILE_REFETCH_INTERVAL)
    else:
        row.status, row.error, row.parsed = FileStatus.OK, "", result.as_json()
        row.text, row.mcp, row.a2a, row.oasf = result.text, result.mcp, result.a2a, result.oasf
        row.proof_of_payment = result.proof_of_payment
        row.next_refetch_at = None  # a feedback file is a record of what was said: read once
    row.save()
    return FetchOutcome(row.status, reason=row.error)


def registration_file_fetch(*, agent_pk: int, now: datetime | None = None) -> FetchOutcome:
    """Fetch, parse and store an agent's pending registration file."""
    stale = RegistrationFile.objects.filter(pk=agent_pk).exclude(uri=F("agent__agent_uri")).exists()
    if stale:  # the URI changed and its schedule was lost: catch up now
        registration_files_schedule(agent_pks=[agent_pk], now=now)
    return _run(RegistrationFile, agent_pk, _store_registration, now)


def feedback_file_fetch(*, feedback_pk: int, now: datetime | None = None) -> FetchOutcome:
    """Fetch, hash-check, parse and store a feedback's pending file."""
    return _run(FeedbackFile, feedback_pk, _store_feedback, now)


#
# Beat: re-fetches and the sweeper
#


def _claim(model: type[FetchedFileRow], condition: Q, update: dict[str, Any], limit: int) -> list[int]:
    """Lock up to ``limit`` rows matching ``condition`` (skipping rows another run
    holds), apply ``update``, return their pks — in one short transaction."""
    with transaction.atomic():
        pks = list(
            model.objects.select_for_update(skip_locked=True)
            .filter(condition)
            .order_by("pk")
            .values_list("pk", flat=True)[:limit]
        )
        if pks:
            model.objects.filter(pk__in=pks).update(**update)
    return pks


def files_refetch_due(*, now: datetime | None = None, limit: int | None = None) -> tuple[list[int], list[int]]:
    """Files whose re-fetch time has come, marked pending; returns (agent pks, feedback pks)."""
    now = _now(now)
    limit = limit or settings.FILE_SWEEP_BATCH
    update = {
        "status": FileStatus.PENDING,
        "attempts": 0,
        "requested_at": now,
        "next_attempt_at": now,
        "next_refetch_at": None,
    }
    due = Q(next_refetch_at__lte=now)
    return _claim(RegistrationFile, due, update, limit), _claim(FeedbackFile, due, update, limit)


def files_sweep(*, now: datetime | None = None, limit: int | None = None) -> tuple[list[int], list[int]]:
    """Find fetches a lost message left behind and return them to enqueue again:

    * pending rows whose attempt time passed more than the grace period ago;
    * agents whose URI differs from their file row's, or that have a URI and no row
      (a receiver that never ran: process killed between commit and enqueue);
    * recent feedback with a URI and no file row (same reason).
    """
    now = _now(now)
    limit = limit or settings.FILE_SWEEP_BATCH
    grace = timedelta(seconds=settings.FILE_PENDING_GRACE_SECONDS)
    stuck = Q(status=FileStatus.PENDING, next_attempt_at__lte=now - grace)
    # Claiming moves next_attempt_at to now: the same row is not re-sent before another grace period.
    agents = _claim(RegistrationFile, stuck, {"next_attempt_at": now}, limit)
    feedback = _claim(FeedbackFile, stuck, {"next_attempt_at": now}, limit)
    missing_agents = list(
        Agent.objects.filter(Q(registration_file__isnull=True) & ~Q(agent_uri="")).values_list("pk", flat=True)[:limit]
    )
    changed_agents = list(
        RegistrationFile.objects.exclude(uri=F("agent__agent_uri")).values_list("pk", flat=True)[:limit]
    )
    agents += registration_files_schedule(agent_pks=[*missing_agents, *changed_agents], now=now)
    recent = now - timedelta(days=1)
    missing_feedback = list(
        Feedback.objects.filter(created_at__gte=recent, file__isnull=True)
        .exclude(feedback_uri="")
        .values_list("pk", flat=True)[:limit]
    )
    feedback += feedback_files_schedule(feedback_pks=missing_feedback, now=now)
    return sorted(set(agents)), sorted(set(feedback))
