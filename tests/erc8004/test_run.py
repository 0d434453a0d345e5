"""``make run`` on the embedded default, as a new user gets it: no PostgreSQL and no
Redis in its environment (SQLite and the embedded Redis-protocol server instead),
the devnet, web, three workers, beat, Flower, the demo workload, the demo objects
and the demo receiver — all real processes.

The test waits for the first signed delivery to reach the demo receiver, checks
what the printed URLs promise (health, metrics from every process, Flower behind
its login, a request id on responses, ``manage.py healthcheck``), then stops the
supervisor the way Ctrl-C does and proves every child process is gone.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.processes import BASE_DIR, free_port, session_members, wait_for

pytestmark = pytest.mark.integration

# Everything the suite's settings put in the environment: make run must not see it.
_SUITE_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "REDIS_KEY_PREFIX",
    "ERC8004_ENV",
    "OUTBOUND_ALLOWLIST",
    "PROMETHEUS_MULTIPROC_DIR",
    "API_THROTTLE_ANON",
    "TEST_DATABASE_NAME",
    "FLOWER_BASIC_AUTH",
)


def _get(url: str, *, auth: str | None = None, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _json_or_none(url: str):
    try:
        status, _, body = _get(url)
    except OSError:
        return None
    return json.loads(body) if status == 200 else None


def test_make_run_delivers_to_the_demo_receiver_and_stops_every_process(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in _SUITE_ENV}
    env.update(DJANGO_SETTINGS_MODULE="erc8004.settings", ERC8004_VAR_DIR=str(tmp_path), PYTHONUNBUFFERED="1")
    web, flower, receiver = free_port(), free_port(), free_port()
    output = (tmp_path / "make-run.out").open("wb")
    argv = [sys.executable, "manage.py", "run", "--port", str(web), "--flower-port", str(flower)]
    argv += ["--receiver-port", str(receiver), "--rate", "4", "--duration", "400", "--no-progress"]
    started = time.monotonic()
    supervisor = subprocess.Popen(
        argv, cwd=BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
    )
    run_file = tmp_path / "run" / "run.json"
    info: dict = {}
    try:
        wait_for(lambda: run_file.exists() or supervisor.poll() is not None, 180, what="make run to start")
        assert supervisor.poll() is None, (tmp_path / "make-run.out").read_text()[-3000:]
        info = json.loads(run_file.read_text())
        printed = (tmp_path / "make-run.out").read_text()
        for label in ("Admin", "Browsable API", "Swagger", "Health", "Metrics", "Flower", "Demo receiver"):
            assert label in printed
        demo = json.loads((tmp_path / "run" / "demo.json").read_text())
        assert f"login {demo['username']} / {demo['password']}" in printed

        # The first delivery reaches the demo receiver, signed and verified.
        counts = wait_for(
            lambda: (c := _json_or_none(info["receiver"] + "/")) and c["accepted"] >= 1 and c,
            180,
            what="the first delivery at the demo receiver",
        )
        assert counts["rejected"] == 0
        first_delivery_after = time.monotonic() - started

        # Health: every part, including one heartbeat per queue, turns healthy.
        def healthy():
            status, headers, body = _get(info["web"] + "/api/v1/health")
            return status == 200 and (headers, json.loads(body))

        headers, report = wait_for(healthy, 60, interval=1, what="/api/v1/health to answer 200")
        assert report["database"] == report["redis"] == "connected"
        assert {"worker:indexing", "worker:triggers", "worker:actions", "chain:31337"} <= set(report["checks"])
        assert headers.get("X-Request-ID")
        _, headers, _ = _get(info["web"] + "/api/v1/status/")
        assert headers.get("X-Request-ID")

        # Metrics: counted in the worker processes, served by a web process.
        _, _, body = _get(info["web"] + "/metrics")
        page = body.decode()
        for series in (
            'erc8004_events_ingested_total{chain="31337"',
            'erc8004_deliveries_total{channel="webhook",status="succeeded"}',
            'erc8004_delivery_latency_seconds_bucket{channel="webhook"',
            "erc8004_trigger_evaluations_total",
            "django_http_requests_total_by_method_total",
            'erc8004_chain_head_block{chain="31337"}',
            'erc8004_queue_depth{queue="actions"}',
            'erc8004_worker_heartbeat_age_seconds{queue="triggers"}',
            "erc8004_destination_breaker_state{",
            "erc8004_outbox_pending_rows",
        ):
            assert series in page, series

        # Flower: its own port, behind the printed login; /metrics exempt by Flower's design.
        flower_login = "admin:erc8004-demo"
        assert _get(info["flower"] + "/")[0] == 401
        assert _get(info["flower"] + "/", auth="admin:wrong")[0] == 401
        assert _get(info["flower"] + "/", auth=flower_login)[0] == 200
        assert _get(info["flower"] + "/metrics")[0] == 200

        # The runbook's health-check script, against the same stack.
        check = subprocess.run(
            [sys.executable, "manage.py", "healthcheck", "--json", "--url", info["web"]],
            cwd=BASE_DIR,
            env={**env, "REDIS_URL": info["redis"]},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert json.loads(check.stdout)["checks"]["web"]["status"] == "ok"
    finally:
        stop_sent = time.monotonic()
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            supervisor.wait(timeout=120)
        except subprocess.TimeoutExpired:
            for pid in [supervisor.pid, *info.get("pids", {}).values()]:
                for member in session_members(pid):
                    os.kill(member, signal.SIGKILL)
            raise
    stopped_after = time.monotonic() - started
    out = (tmp_path / "make-run.out").read_text()
    assert supervisor.returncode == 0, out[-3000:]
    assert "stopped cleanly" in out
    assert "killed after" not in out  # every child stopped on SIGTERM, none needed SIGKILL
    leftovers = {name: session_members(pid) for name, pid in info["pids"].items() if session_members(pid)}
    assert not leftovers, leftovers
    print(
        f"\nmake run: first delivery after {first_delivery_after:.1f}s; Ctrl-C to every process gone "
        f"{stopped_after - (stop_sent - started):.1f}s; {stopped_after:.1f}s in all"
    )
