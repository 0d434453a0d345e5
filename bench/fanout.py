"""Fan-out benchmark: one event matching 1,000 webhook destinations, all delivered.

What it runs, all real: PostgreSQL (``DATABASE_URL``, default a dedicated
``erc8004_bench_actions`` database, created and migrated if missing), Redis
(``REDIS_URL``, keys under a per-run prefix), ``--workers`` Celery worker processes
(``celery -A erc8004 worker -Q actions -P threads``: sending is I/O bound), beat's
dispatcher and sweeper in a thread of this process (every second, as beat would),
and a loopback receiver process (uvicorn) that verifies every Standard Webhooks
signature and counts deliveries per ``webhook-id``.

The triggers layer does not exist yet, so the deliveries are created directly the way
it will create them: for one event, ``payload_build`` + ``delivery_create`` per matching
destination, all in one transaction; the sends are published when it commits.

Measured:

* ``fanout_1000_s``: from the start of that transaction to the receiver holding 1,000
  verified, distinct deliveries;
* ``steady_deliveries_per_s``: a second, larger burst (``--steady`` deliveries); the
  receiver's rate between 20 % and 80 % of it (ramp-up and tail excluded);
* ``peak_rss_mb``: the largest peak resident set (``VmHWM``) of the worker processes.

Usage::

    .venv/bin/python bench/fanout.py [--workers 2] [--concurrency 16] [--steady 3000]

The last line is ``fanout_1000_s=… steady_deliveries_per_s=… peak_rss_mb=…``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_" + base64.b64encode(b"erc8004-bench-signing-key-0123456789").decode()


#
# The receiver (a separate process, so it does not share this process's GIL)
#


def receiver_main(port: int) -> None:
    import uvicorn

    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    seen: set[str] = set()
    stats = {"total": 0, "unique": 0, "bad_signature": 0}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["method"] == "GET":
            payload = json.dumps(stats).encode()
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": payload})
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
        expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
        if not any(s == "v1," + expected for s in headers.get("webhook-signature", "").split(" ")):
            stats["bad_signature"] += 1
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        stats["total"] += 1
        if msg_id not in seen:
            seen.add(msg_id)
            stats["unique"] += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=4096)


def receiver_stats(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        return json.loads(response.read())


#
# The benchmark
#


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ensure_database(url: str) -> None:
    import psycopg2
    from psycopg2 import sql

    name = url.rsplit("/", 1)[1]
    admin = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()


def _vm_hwm_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=16, help="threads per worker")
    parser.add_argument("--destinations", type=int, default=1000)
    parser.add_argument("--steady", type=int, default=3000, help="deliveries in the steady-state burst")
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        receiver_main(args.receiver)
        return 0

    load_at_start = os.getloadavg()[0]  # other work on the machine skews every figure below
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/erc8004_bench_actions")
    os.environ.setdefault("REDIS_KEY_PREFIX", f"erc8004-bench-{os.getpid()}:")
    os.environ.setdefault("OUTBOUND_ALLOWLIST", "127.0.0.0/8")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "erc8004.settings")
    os.environ.setdefault("ACTIONS_LEASE_MARGIN_SECONDS", "30")
    sys.path.insert(0, str(ROOT))
    _ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import transaction
    from django.db.models import Count

    from actions.models import Attempt, Delivery, Destination
    from actions.services import (
        DeliverySpec,
        deliveries_create,
        deliveries_dispatch_due,
        deliveries_sweep,
        destination_create,
        payload_build,
    )
    from erc8004.models import Organization
    from erc8004.queues import redis_client

    call_command("migrate", verbosity=0)
    Attempt.objects.all().delete()
    Delivery.objects.all().delete()
    Destination.objects.all().delete()
    Organization.objects.filter(slug="bench").delete()

    port = _free_port()
    children: list[subprocess.Popen] = []
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", str(port)], cwd=ROOT)
    children.append(receiver)
    stop = threading.Event()
    try:
        for _ in range(100):
            try:
                receiver_stats(port)
                break
            except OSError:
                time.sleep(0.1)

        org = Organization.objects.create(name="Bench", slug="bench")
        destinations = [
            destination_create(
                organization=org,
                name=f"hook-{i:04d}",
                channel="webhook",
                config={"url": f"http://127.0.0.1:{port}/hooks/{i}", "timeout": 10},
                secret=SECRET,
            )
            for i in range(args.destinations)
        ]
        print(f"{len(destinations)} webhook destinations → receiver on 127.0.0.1:{port}", flush=True)

        worker_env = dict(os.environ)
        for n in range(args.workers):
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "erc8004",
                        "worker",
                        "-Q",
                        settings.ACTIONS_QUEUE,
                        "-P",
                        "threads",
                        "-c",
                        str(args.concurrency),
                        "-n",
                        f"bench{n}@%h",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "-l",
                        "WARNING",
                    ],
                    cwd=ROOT,
                    env=worker_env,
                )
            )
        workers = children[1:]

        def beat() -> None:
            from django.db import connection

            while not stop.is_set():
                try:
                    deliveries_dispatch_due()
                    deliveries_sweep()
                except Exception as exc:  # keep ticking, like beat
                    print(f"beat tick failed: {exc}", flush=True)
                stop.wait(settings.ACTIONS_DISPATCH_INTERVAL)
            connection.close()

        threading.Thread(target=beat, daemon=True).start()

        event = {
            "id": 1,
            "type": "NewFeedback",
            "registry": "reputation",
            "chain_id": 31337,
            "block_number": 100,
            "block_hash": "0x" + "ab" * 32,
            "block_timestamp": "2026-01-01T00:00:00+00:00",
            "transaction_hash": "0x" + "cd" * 32,
            "log_index": 0,
            "args": {"agentId": 5, "score": 97},
        }

        def fan_out(event_id: int, targets: list[Destination]) -> float:
            """What triggers.evaluate will do for one event: one transaction, one delivery per match."""
            started = time.monotonic()
            specs = []
            for destination in targets:
                context = {
                    "event": {**event, "id": event_id},
                    "agent": {"chain_id": 31337, "agent_id": 5, "name": "bench agent"},
                    "trigger": {"id": destination.pk, "name": f"trigger {destination.pk}"},
                    "chain": {"chain_id": 31337, "name": "devnet"},
                }
                specs.append(
                    DeliverySpec(
                        destination=destination,
                        payload=payload_build(destination=destination, template=None, context=context),
                        idempotency_key=f"bench:{os.getpid()}:event:{event_id}:dest:{destination.pk}",
                        event_id=event_id,
                    )
                )
            built = time.monotonic()
            with transaction.atomic():
                deliveries_create(specs=specs)
                inserted = time.monotonic()
            print(
                f"  event {event_id}: payloads {built - started:.2f}s, insert {inserted - built:.2f}s, "
                f"commit + publish {time.monotonic() - inserted:.2f}s",
                flush=True,
            )
            return time.monotonic() - started

        def wait_for(unique: int, timeout: float = 300) -> list[tuple[float, int]]:
            samples = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = receiver_stats(port)["unique"]
                samples.append((time.monotonic(), got))
                if got >= unique:
                    return samples
                time.sleep(0.02)
            raise RuntimeError(f"timed out: receiver has {samples[-1][1]} of {unique}")

        # Warm-up: workers connected and their pools and connections open.
        fan_out(0, destinations[: 4 * args.workers * args.concurrency])
        wait_for(4 * args.workers * args.concurrency)
        time.sleep(1)
        base = receiver_stats(port)["unique"]

        t0 = time.monotonic()
        create_s = fan_out(1, destinations)
        samples = wait_for(base + len(destinations))
        fanout_s = samples[-1][0] - t0
        print(
            f"fanout: {len(destinations)} deliveries created and committed in {create_s:.2f}s, "
            f"all delivered {fanout_s:.2f}s after the event",
            flush=True,
        )

        base = receiver_stats(port)["unique"]
        cpu_before = {w.pid: _cpu_seconds(w.pid) for w in workers}
        own_cpu_before, receiver_cpu_before = time.process_time(), _cpu_seconds(receiver.pid)
        rounds = max(1, args.steady // len(destinations))
        total = rounds * len(destinations)
        samples: list[tuple[float, int]] = []
        sampling = threading.Event()

        def sample() -> None:  # the receiver's count over time, from the first commit on
            while not sampling.is_set():
                samples.append((time.monotonic(), receiver_stats(port)["unique"]))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        t1 = time.monotonic()
        sampler.start()
        for r in range(rounds):
            fan_out(2 + r, destinations)
        created = time.monotonic() - t1
        wait_for(base + total)
        sampling.set()
        sampler.join()
        samples.append((time.monotonic(), receiver_stats(port)["unique"]))
        lo = next(s for s in samples if s[1] - base >= 0.2 * total)
        hi = next(s for s in samples if s[1] - base >= 0.8 * total)
        steady = (hi[1] - lo[1]) / max(1e-9, hi[0] - lo[0])
        worker_cpu = sum(_cpu_seconds(w.pid) - cpu_before[w.pid] for w in workers)
        own_cpu = time.process_time() - own_cpu_before
        receiver_cpu = _cpu_seconds(receiver.pid) - receiver_cpu_before
        print(
            f"CPU per delivery: workers {1000 * worker_cpu / total:.1f} ms, creating + publishing + beat "
            f"{1000 * own_cpu / total:.1f} ms, receiver {1000 * receiver_cpu / total:.1f} ms "
            f"(PostgreSQL and Redis not counted)",
            flush=True,
        )
        print(
            f"steady: {total} deliveries ({rounds} events x {len(destinations)}) created in {created:.2f}s, "
            f"drained {samples[-1][0] - t1:.2f}s after the first; 20-80 % rate {steady:.0f}/s",
            flush=True,
        )

        stats = receiver_stats(port)
        counts = dict(Delivery.objects.values_list("status").annotate(n=Count("id")))
        print(f"receiver: {stats}; outbox: {counts}", flush=True)
        if stats["total"] != stats["unique"] or stats["bad_signature"]:
            print("WARNING: duplicates or bad signatures at the receiver", flush=True)
        peak = max(_vm_hwm_mb(w.pid) for w in workers)
        print(f"workers: {args.workers} x {args.concurrency} threads; peak RSS per worker {peak:.0f} MB", flush=True)
        print(
            f"machine: {os.cpu_count()} CPUs, 1-min load average {load_at_start:.1f} when the run started", flush=True
        )
        print(f"fanout_1000_s={fanout_s:.2f} steady_deliveries_per_s={steady:.0f} peak_rss_mb={peak:.0f}", flush=True)
        return 0
    finally:
        stop.set()
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        client = redis_client()
        for key in client.scan_iter(match=settings.REDIS_KEY_PREFIX + "*", count=1000):
            client.delete(key)


if __name__ == "__main__":
    sys.exit(main())
