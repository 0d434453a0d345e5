"""Fault scenario 7, the files part: a seeded devnet workload whose agents' and
feedback's URIs point at a real hostile file server (tests/faults/hostile.py) —
oversized bodies (declared and chunked), JSON nested 5,000 deep, invalid UTF-8, a
5,000-digit integer, NaN, HTML, a top-level array, a wrong type for each field we
read, a slow-loris server dribbling a byte every 100 ms, a server that never
answers, a redirect loop, a 500 — next to honest files (http and ipfs through a
gateway on the same server).

End to end: anvil → the indexer (in the test thread) → the file fetch messages →
the real Celery worker (in-thread) → the file rows. What must hold:

* each hostile file's row is ``error`` with a reason naming what was wrong (the
  ``KINDS`` words), after one attempt (retries are switched off so the verdict is
  immediate; the retry ladder is the poller tests' business);
* no fetch outlives the total time cap by more than a little (the worker is never
  stuck on a dribbling or silent server), and the worker keeps going;
* the rest of the index is unaffected: every honest file is ``ok`` with its name on
  the agent, and the scenario's verdict holds (deliveries exactly once, the read
  model equal to the chain's ground truth — hostile agents included).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

import pytest
from django.test import override_settings

from actions.models import Delivery
from agents.models import FeedbackFile, FileStatus, RegistrationFile
from indexing.devnet.workload import Workload
from tests.faults.harness import sized, verdict_check
from tests.faults.hostile import FEEDBACK_KINDS, KINDS, HostileFileServer
from tests.fixtures.pipeline import low_feedback_count, pipeline_build, poll_until_caught_up
from tests.fixtures.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.faults]

FETCH_TIMEOUT = 1.0  # FILE_FETCH_TIMEOUT for the scenario: the slow servers hit it


class HostileWorkload(Workload):
    """The seeded workload, with its URIs pointed at the hostile server: every URI it
    would write is replaced in turn by the next hostile kind until each was used
    once, then by an honest file on the same server (http) or kept (ipfs, served by
    the same server as the only gateway). The random stream is the base workload's,
    so the ground truth stays exact."""

    def __init__(self, *args: Any, server: HostileFileServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server = server
        self._agent_kinds = list(KINDS)
        self._feedback_kinds = list(FEEDBACK_KINDS)
        self._serial = itertools.count()

    def _agent_uri(self, agent_id: int, owner: str) -> str:
        uri = super()._agent_uri(agent_id, owner)
        current = self._model.by_id.get(agent_id)
        if current is not None and _kind(current.uri, self._server.base_url) in KINDS:
            return current.uri  # a setAgentURI keeps a hostile agent hostile (every kind stays checked)
        if uri and self._agent_kinds:
            return self._server.url(self._agent_kinds.pop(0), f"agent-{agent_id}-{next(self._serial)}")
        if uri.startswith("https://"):
            return self._server.url("ok", f"agent-{agent_id}-{next(self._serial)}")
        return uri

    def _feedback_uri(self) -> str:
        uri = super()._feedback_uri()
        if uri and self._feedback_kinds:
            return self._server.url(self._feedback_kinds.pop(0), f"feedback-{next(self._serial)}")
        if uri.startswith("https://"):
            return self._server.url("feedback-ok", f"feedback-{next(self._serial)}")
        return uri


def _kind(uri: str, base: str) -> str:
    """The hostile kind a URI names, or its scheme (``ipfs``, ``data``), or ``""``."""
    if uri.startswith(base + "/"):
        return uri[len(base) + 1 :].split("/", 1)[0]
    return uri.split(":", 1)[0] if uri else ""


def test_hostile_files_are_recorded_and_the_index_is_unaffected(devnet_factory, webhook_receiver, celery_worker):
    server = HostileFileServer()
    try:
        devnet = devnet_factory()
        pipeline = pipeline_build(devnet, webhook_receiver, seed=77)
        workload = HostileWorkload(devnet.w3, devnet.deployment, seed=77, server=server)
        chain_id = pipeline.chain.chain_id
        ops = sized(300, 1200)
        with override_settings(
            FILE_FETCH_TIMEOUT=FETCH_TIMEOUT, FILE_FETCH_RETRY_DELAYS=[], IPFS_GATEWAYS=[server.base_url]
        ):
            started = time.monotonic()
            workload.run(ops)
            poll_until_caught_up(chain_id)
            indexed = time.monotonic()

            def settled() -> bool:
                rows = [*RegistrationFile.objects.filter(agent__chain_id=chain_id).values_list("status", flat=True)]
                rows += FeedbackFile.objects.filter(feedback__agent__chain_id=chain_id).values_list("status", flat=True)
                return bool(rows) and FileStatus.PENDING not in rows

            wait_for(settled, 180, interval=0.5, what="every file fetched or failed")
            fetched = time.monotonic()
        assert not workload._agent_kinds, f"the workload wrote too few agent URIs: {workload._agent_kinds} unused"
        assert not workload._feedback_kinds, f"too few feedback URIs: {workload._feedback_kinds} unused"

        outcomes: Counter[str] = Counter()
        base = server.base_url
        for row in RegistrationFile.objects.filter(agent__chain_id=chain_id).select_related("agent"):
            kind = _kind(row.uri, base)
            outcomes[f"registration {kind or 'no uri'}: {row.status}"] += 1
            if kind in KINDS:
                assert row.status == FileStatus.ERROR, (kind, row.status, row.error)
                assert KINDS[kind] in row.error.lower(), (kind, row.error)
                assert row.attempts == 1, (kind, row.attempts)
                assert row.agent.name == "", "a hostile file's values leaked onto the agent"
            elif kind in ("ok", "ipfs", "data"):
                assert row.status == FileStatus.OK, (row.uri, row.error)
                assert row.agent.name, row.uri
            else:
                assert row.status == FileStatus.UNSUPPORTED, (row.uri, row.status)
        for row in FeedbackFile.objects.filter(feedback__agent__chain_id=chain_id):
            kind = _kind(row.uri, base)
            outcomes[f"feedback {kind}: {row.status}"] += 1
            if kind in FEEDBACK_KINDS:
                assert row.status == FileStatus.ERROR, (kind, row.status, row.error)
                assert FEEDBACK_KINDS[kind] in row.error.lower(), (kind, row.error)
            else:
                assert row.status == FileStatus.OK, (row.uri, row.error)

        # The slow servers were cut at the total cap: their handlers saw the client go.
        slow = [h for h in server.hits if h.startswith(("/slow-loris/", "/silent/"))]
        assert len(slow) == 4  # two agents, two feedback files; one attempt each
        capped = RegistrationFile.objects.filter(agent__chain_id=chain_id, error__contains="total cap").count()
        capped += FeedbackFile.objects.filter(feedback__agent__chain_id=chain_id, error__contains="total cap").count()
        assert capped == 4
        seen = {k.split()[1].rstrip(":") for k in outcomes if k.startswith("registration")}
        assert set(KINDS) <= seen, f"kinds without a row: {set(KINDS) - seen}"
        truth = workload.truth()
        expected = low_feedback_count(truth)
        assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=60)
        # The receiver counts a delivery as it answers; the sender records it just after.
        wait_for(lambda: not Delivery.objects.exclude(status="succeeded").exists(), 30, what="deliveries recorded")
        verdict = verdict_check(webhook_receiver, expected=expected, chain_id=chain_id, truth=truth)
        hostile = sum(n for k, n in outcomes.items() if k.split()[1].rstrip(":") in {*KINDS, *FEEDBACK_KINDS})
        print(
            f"\n[bad-input] files: {ops} ops, {len(truth['agents'])} agents, {sum(outcomes.values())} file rows, "
            f"{hostile} hostile all recorded as errors, {verdict.distinct}/{expected} deliveries; "
            f"indexed in {indexed - started:.1f}s, files settled {fetched - indexed:.1f}s later; "
            + ", ".join(f"{k}: {n}" for k, n in sorted(outcomes.items()))
        )
    finally:
        server.close()
