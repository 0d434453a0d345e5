"""``/metrics`` after real activity: a devnet indexed by the poller, a real worker
delivering to a signed-webhook receiver, a destination whose breaker opens for
real. The page is parsed with prometheus_client's own parser (so the exposition
format is valid), and each series is checked against the database.

The multi-process side (counters written by worker processes, summed by a web
process) is exercised by tests/erc8004/test_run.py on the real ``make run`` stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

from actions.models import BreakerState, Delivery, Destination
from actions.services import destination_create, destination_test
from erc8004 import metrics
from indexing.models import ChainCursor, ChainEvent
from tests.fixtures.pipeline import low_feedback_count, pipeline_build, poll_until_caught_up
from tests.fixtures.processes import BASE_DIR, free_port, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= set(lbls))


def test_metrics_after_real_activity(devnet_factory, celery_worker, webhook_receiver, client):
    pipeline = pipeline_build(devnet_factory(), webhook_receiver, seed=5)
    chain = str(pipeline.chain.chain_id)
    before = scrape(client)

    pipeline.workload.run(120)
    poll_until_caught_up(pipeline.chain.chain_id)
    expected = low_feedback_count(pipeline.workload.truth())
    assert expected > 0
    assert webhook_receiver.wait_for(lambda r: len(r.accepted) >= expected, timeout=60)

    # A destination whose receiver is down opens its breaker at the first failure.
    down = destination_create(
        organization=pipeline.destination.organization,
        name="down",
        channel="webhook",
        config={"url": f"http://127.0.0.1:{free_port()}/hook", "timeout": 2},
        failure_threshold=1,
        cooldown_seconds=600,
    )
    destination_test(destination=down)
    wait_for(
        lambda: Destination.objects.get(pk=down.pk).breaker_state == BreakerState.OPEN, 30, what="the breaker to open"
    )

    after = scrape(client)
    events = ChainEvent.objects.filter(chain_id=pipeline.chain.chain_id).count()
    cursor = ChainCursor.objects.get(pk=pipeline.chain.chain_id)

    # Counters (this process's registry: the in-thread worker counts here too).
    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("erc8004_events_ingested_total", chain=chain) == events
    assert delta("erc8004_rpc_calls_total", chain=chain) > 0
    assert delta("erc8004_polls_total", chain=chain, outcome="indexed") >= 1
    assert delta("erc8004_trigger_matches_total", outcome="fired") == expected
    assert delta("erc8004_deliveries_total", channel="webhook", status="succeeded") == expected
    assert delta("erc8004_delivery_attempts_total", channel="webhook", outcome="failure") >= 1
    assert delta("erc8004_delivery_latency_seconds_count", channel="webhook") == expected
    assert delta("erc8004_breaker_transitions_total", channel="webhook", to_state="open") == 1
    assert total(after, "django_http_requests_total_by_method_total", method="GET") > 0

    # Facts read at scrape time from the database and Redis.
    assert after[("erc8004_chain_head_block", (("chain", chain),))] == cursor.head_block
    assert after[("erc8004_chain_indexed_block", (("chain", chain),))] == cursor.last_block_number
    assert after[("erc8004_chain_lag_blocks", (("chain", chain),))] == cursor.head_block - cursor.last_block_number
    assert ("erc8004_chain_lag_seconds", (("chain", chain),)) in after
    assert after[("erc8004_chain_reorgs", (("chain", chain),))] == cursor.reorg_count
    state = after[("erc8004_destination_breaker_state", (("channel", "webhook"), ("destination", str(down.pk))))]
    assert state == 2
    assert (
        after[
            (
                "erc8004_destination_breaker_state",
                (("channel", "webhook"), ("destination", str(pipeline.destination.pk))),
            )
        ]
        == 0
    )
    assert after[("erc8004_destinations", (("breaker_state", "open"),))] == 1
    waiting = Delivery.objects.filter(status__in=("pending", "retrying")).count()
    assert after[("erc8004_outbox_pending_rows", ())] == waiting
    assert after[("erc8004_outbox_dead_letters", ())] == Delivery.objects.filter(status="dead").count()
    for queue in ("indexing", "files", "triggers", "actions"):
        assert ("erc8004_queue_depth", (("queue", queue),)) in after
    assert after[("erc8004_events_unevaluated", ())] == 0
    assert total(after, "erc8004_scrape_errors") == 0


def test_a_failing_collector_is_reported_and_the_rest_still_served(client, db):
    def broken():
        raise RuntimeError("redis is down")

    metrics.scrape_collector(broken)
    try:
        samples = scrape(client)
    finally:
        metrics._SCRAPE_COLLECTORS.remove(broken)
    name = f"{broken.__module__}.{broken.__qualname__}"
    assert samples[("erc8004_scrape_errors", (("collector", name),))] == 1
    assert ("erc8004_outbox_pending_rows", ()) in samples


def test_a_bearer_token_guards_the_page_when_set(client, db):
    with override_settings(METRICS_BEARER_TOKEN="s3cret-scrape-token"):
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200
    assert client.get("/metrics").status_code == 200


def _write_counter(directory, value: int) -> None:
    """A separate process counting in multiprocess mode (as a worker does)."""
    directory.mkdir(parents=True, exist_ok=True)
    code = (
        "from prometheus_client import Counter; "
        f"Counter('erc8004_test_things', 'things', ['queue']).labels('actions').inc({value})"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)


def test_counters_of_other_processes_and_containers_are_summed(client, db, tmp_path, monkeypatch):
    # make run: every process of one host writes into one directory.
    _write_counter(tmp_path / "one", 2)
    _write_counter(tmp_path / "one", 3)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "one"))
    assert scrape(client)[("erc8004_test_things_total", (("queue", "actions"),))] == 5

    # docker compose: one directory per container (pids repeat across containers).
    _write_counter(tmp_path / "root" / "web-1", 1)
    _write_counter(tmp_path / "root" / "worker-actions-1", 10)
    _write_counter(tmp_path / "root" / "worker-actions-2", 100)
    monkeypatch.setenv("METRICS_MULTIPROC_ROOT", str(tmp_path / "root"))
    samples = scrape(client)
    assert samples[("erc8004_test_things_total", (("queue", "actions"),))] == 111
    assert ("erc8004_outbox_pending_rows", ()) in samples  # the facts are still there


def test_metrics_exporter_serves_a_worker_hosts_counters(tmp_path):
    """Multi-host: a host with workers and no web process exports its own counters."""
    _write_counter(tmp_path / "root" / "worker-actions-1", 7)
    port = free_port()
    env = {**os.environ, "METRICS_MULTIPROC_ROOT": str(tmp_path / "root")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "metrics_exporter", "--port", str(port), "--address", "127.0.0.1"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        page = wait_for(lambda: _fetch(f"http://127.0.0.1:{port}/metrics"), 30, what="the exporter")
        assert 'erc8004_test_things_total{queue="actions"} 7.0' in page
        assert "erc8004_outbox" not in page  # no database facts: those come from the web, once
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def _fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.read().decode()
    except OSError:
        return None
