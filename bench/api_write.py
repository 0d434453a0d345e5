"""Trigger management API benchmark: create, update and list triggers with nested
conditions and actions, against gunicorn on loopback.

    .venv/bin/python bench/api_write.py [--requests 100] [--seconds 15] [--workers N (default: cores)]

1. A fresh PostgreSQL database (``erc8004_bench_write``), migrated; an account, an
   organization with two destinations and 200 existing triggers; an API key
   (programs are the API's heaviest users; ``Authorization: Api-Key …``).
2. gunicorn (sync workers, one per core — the production server) on 127.0.0.1,
   started and stopped by this script, with throttling rates raised so the benchmark measures the API,
   not the limiter.
3. 4 concurrent clients, each ``--requests`` rounds of: create a trigger (conditions
   tree + 2 actions), replace it with PUT (new conditions and actions), list a page
   of 50 triggers (actions included). Latency p50/p95 per kind.
4. 16 concurrent clients for ``--seconds`` seconds, the same mix: requests/s.

Targets (2-core machine, 4 clients): writes ≤ 100 ms p95, lists ≤ 50 ms p95. The
machine is shared: the 1-minute load average is printed before and after. The last
line is ``key=value`` pairs for scripts.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "erc8004_bench_write"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
PREFIX = f"bench-write-{os.getpid()}:"
SERVER_ENV = {
    "DATABASE_URL": DB_URL,
    "DJANGO_SETTINGS_MODULE": "erc8004.settings",
    "ERC8004_ENV": "development",
    "DJANGO_DEBUG": "false",
    "REDIS_KEY_PREFIX": PREFIX,
    "OUTBOUND_ALLOWLIST": "127.0.0.0/8",
    "LOG_LEVEL": "WARNING",
    **{f"THROTTLE_RATE_{s}": "10000000/min" for s in ("USER", "APIKEY", "ANON", "LOGIN", "TEST_SEND")},
}
os.environ.update(SERVER_ENV)

import django  # noqa: E402

django.setup()

import psycopg2  # noqa: E402


def recreate_database() -> None:
    conn = psycopg2.connect(dbname="postgres", user="postgres", host="127.0.0.1")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DB_NAME}")
    conn.close()


def setup(existing: int) -> tuple[str, list[int]]:
    """Account, organization, destinations, some triggers; returns (API key, destination ids)."""
    from django.db import connections

    from actions.services import destination_create
    from erc8004.accounts import api_key_create, organization_create, user_create
    from triggers.services import ActionSpec, trigger_create

    connections.close_all()
    recreate_database()
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
        cwd=ROOT,
        env=dict(os.environ),
        check=True,
        capture_output=True,
    )
    user = user_create(username="bench", password=None)
    org = organization_create(name="Bench", created_by=user)
    hook = destination_create(
        organization=org, name="hook", channel="webhook", config={"url": "http://127.0.0.1:9/hook"}
    )
    chat = destination_create(
        organization=org,
        name="chat",
        channel="telegram",
        config={"chat_id": "42", "api_base_url": "http://127.0.0.1:9"},
        secret="123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ",  # noqa: S106 - a made-up bot token
    )
    for i in range(existing):
        trigger_create(
            organization=org,
            name=f"existing {i}",
            conditions=conditions(i),
            actions=[ActionSpec(destination=hook), ActionSpec(destination=chat, template="Agent {{ event.agent_id }}")],
        )
    _, raw = api_key_create(organization=org, name="bench", role="member", created_by=user)
    connections.close_all()
    return raw, [hook.pk, chat.pk]


def conditions(i: int) -> dict:
    return {
        "all": [
            {"type": "agent_id", "values": [str(i % 50 + 1), str(i % 50 + 2)]},
            {"any": [{"type": "value_threshold", "op": "lt", "value": 30 + i % 20}, {"type": "first_feedback"}]},
            {"type": "field", "field": "args.tag1", "op": "ne", "value": "spam"},
        ]
    }


def trigger_body(i: int, destinations: list[int]) -> dict:
    return {
        "name": f"bench {i}",
        "chain_ids": [31337, 8453],
        "event_types": ["NewFeedback", "ValidationResponse"],
        "conditions": conditions(i),
        "cooldown_seconds": 60,
        "actions": [
            {"destination": destinations[0], "template": {"agent": "{{ event.agent_id }}", "id": "{{ event.id }}"}},
            {"destination": destinations[1], "template": "Agent {{ event.agent_id }}: {{ event.type }}"},
        ],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "erc8004.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "sync",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        start_new_session=True,
    )


def wait_ready(base: str, headers: dict, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("gunicorn exited during start-up")
        try:
            if requests.get(f"{base}/api/v1/auth/me/", headers=headers, timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit("gunicorn did not answer within 60 s")


class Client:
    """One HTTP client: a round is create → replace (PUT) → list."""

    def __init__(self, base: str, headers: dict, destinations: list[int], seed: int) -> None:
        self.base, self.destinations, self.n = base, destinations, seed * 1_000_000
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.errors = 0
        self.count = 0

    def _timed(self, kind: str, method: str, path: str, body: dict | None = None) -> requests.Response:
        started = time.perf_counter()
        response = self.session.request(method, self.base + path, json=body, timeout=30)
        self.samples[kind].append((time.perf_counter() - started) * 1000)
        self.count += 1
        if response.status_code >= 400:
            self.errors += 1
            if self.errors <= 3:
                print(f"  {method} {path}: {response.status_code} {response.text[:200]}", file=sys.stderr)
        return response

    def round(self) -> None:
        self.n += 1
        created = self._timed("write", "POST", "/api/v1/triggers/", trigger_body(self.n, self.destinations))
        if created.status_code == 201:
            trigger_id = created.json()["id"]
            self._timed("write", "PUT", f"/api/v1/triggers/{trigger_id}/", trigger_body(self.n + 7, self.destinations))
        self._timed("list", "GET", "/api/v1/triggers/?page_size=50")


def run_clients(clients: list[Client], *, rounds: int | None = None, seconds: float | None = None) -> float:
    stop = threading.Event()

    def work(client: Client) -> None:
        done = 0
        while not stop.is_set() and (rounds is None or done < rounds):
            client.round()
            done += 1

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    started = time.perf_counter()
    for t in threads:
        t.start()
    if seconds is not None:
        time.sleep(seconds)
        stop.set()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def server_cpu_seconds(master_pid: int) -> float:
    """User + system CPU of gunicorn's workers (from /proc): the server's own cost per
    request, which — unlike latency — other processes on a shared machine do not
    inflate."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100, help="rounds per client at 4 clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration at 16 clients")
    # One sync worker per core: the work is CPU-bound (Python + DRF), so more workers
    # only add context switches — measured: 2 workers beat 3 and 4 on 2 cores.
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="gunicorn sync workers")
    parser.add_argument("--existing", type=int, default=200, help="triggers in the organization before the run")
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores")
    raw_key, destinations = setup(args.existing)
    headers = {"Authorization": f"Api-Key {raw_key}", "Accept": "application/json"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_gunicorn(port, args.workers)
    try:
        wait_ready(base, headers, proc)
        warm = [Client(base, headers, destinations, 90 + i) for i in range(4)]
        run_clients(warm, rounds=5)

        clients = [Client(base, headers, destinations, i + 1) for i in range(4)]
        cpu0 = server_cpu_seconds(proc.pid)
        elapsed4 = run_clients(clients, rounds=args.requests)
        cpu4 = server_cpu_seconds(proc.pid) - cpu0
        writes = [v for c in clients for v in c.samples["write"]]
        lists = [v for c in clients for v in c.samples["list"]]
        errors4 = sum(c.errors for c in clients)
        load_mid = os.getloadavg()[0]
        print(
            f"4 clients, {len(writes) + len(lists)} requests in {elapsed4:.1f}s: "
            f"write p50={pct(writes, 50):.1f} ms p95={pct(writes, 95):.1f} ms; "
            f"list p50={pct(lists, 50):.1f} ms p95={pct(lists, 95):.1f} ms; errors={errors4}; "
            f"server CPU {cpu4 * 1000 / (len(writes) + len(lists)):.1f} ms/request"
        )

        many = [Client(base, headers, destinations, 100 + i) for i in range(16)]
        elapsed16 = run_clients(many, seconds=args.seconds)
        total16 = sum(c.count for c in many)
        errors16 = sum(c.errors for c in many)
        rps16 = total16 / elapsed16
        all16 = [v for c in many for kind in ("write", "list") for v in c.samples[kind]]
        print(
            f"16 clients, {total16} requests in {elapsed16:.1f}s: {rps16:.0f} req/s "
            f"(p50={pct(all16, 50):.1f} ms p95={pct(all16, 95):.1f} ms); errors={errors16}"
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    load_after = os.getloadavg()[0]
    print(f"load average during/after: {load_mid:.2f} / {load_after:.2f} (1 min)")
    if errors4 or errors16:
        print(f"WARNING: {errors4 + errors16} failed requests", file=sys.stderr)
    print(
        f"write_p95_ms={pct(writes, 95):.1f} list_p95_ms={pct(lists, 95):.1f} rps_16={rps16:.0f} "
        f"write_p50_ms={pct(writes, 50):.1f} list_p50_ms={pct(lists, 50):.1f} "
        f"cpu_ms_per_request={cpu4 * 1000 / (len(writes) + len(lists)):.1f} load1={load_mid:.2f}"
    )


if __name__ == "__main__":
    main()
