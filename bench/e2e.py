"""End-to-end latency benchmark: block mined → delivery at the receiver, the production layout.

    .venv/bin/python bench/e2e.py [--events 500] [--rate 5] [--poll-interval 1.0] [--nudge] [--block-time 1]

What runs, all real and all separate processes except the receivers:

* PostgreSQL (a fresh database of its own, ``erc8004_bench_e2e``) and the shared Redis
  (keys under a per-run prefix, deleted at the end; never flushed);
* anvil with ``--block-time 1`` and the project's contracts; the chain registered with
  confirmations 0 and ``--poll-interval`` seconds between polls;
* the deploy/docker-compose.yml layout on one machine: gunicorn (``erc8004.gunicorn_conf``),
  one Celery worker per queue with the pools deploy/ uses (indexing and triggers prefork
  x2, actions threads x32), beat — and with ``--nudge`` the new-heads listener
  (``manage.py head_listener``: a websocket ``newHeads`` subscription that enqueues a poll
  at once; polling stays the source of truth);
* in this process, on loopback threads: the signature-verifying webhook receiver and the
  Telegram Bot API stand-in of tests/fixtures/receivers.py.

The scenario: 110 agents; 100 webhook triggers (one per agent, ``agent_id`` condition,
``NewFeedback``; each its own destination) and 10 Telegram triggers (one per agent, each its
own chat). After a warm-up, ``--events`` ``giveFeedback`` transactions are sent at a steady
``--rate`` per second, round-robin over the 110 agents (continuing after the warm-up's):
every event matches exactly one trigger, so 500 events make 500 deliveries (with the
default 20-event warm-up: 460 webhooks + 40 Telegram messages).

Latency of a delivery = its arrival at the receiver - the moment its transaction's block was
mined. Two clocks for "mined":

* **seen** (the one reported): a thread polls ``eth_blockNumber`` every 10 ms and stamps
  the first moment each block number is visible — at most ~10 ms + one loopback RPC after
  anvil sealed it;
* **timestamp**: the block header's ``timestamp`` (1 s resolution; anvil stamps a block with
  whole seconds, so this figure carries up to a second of rounding — shown for reference).

Reported: p50/p95/p99 of the latency, the deliveries per second at the receivers (first to
last arrival; bounded by ``--rate``, the offered load), the peak RSS (``VmHWM``) of every
process of the stack, the 1-minute load average at the start and the end.

The last line is ``p50_s=… p95_s=… p99_s=… deliveries_per_s=…``. Targets (2-core machine):
p50 at most 1.0 s, p95 at most 2.0 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "erc8004_bench_e2e"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
BOT_TOKEN = "123456:bench-e2e-stand-in-token-0123"  # noqa: S105 - the stand-in's token
SECRET = "whsec_ZXJjODAwNC1iZW5jaC1lMmUtc2lnbmluZy1rZXktMDEyMzQ1Njc4OQ=="  # noqa: S105 - loopback receiver
TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")

# The receivers run on threads here; the stack reaches the Telegram stand-in through the
# settings, so its port must be known before Django reads them.
from tests.fixtures.receivers import TelegramStandIn, WebhookReceiver  # noqa: E402

TELEGRAM = TelegramStandIn()
WEBHOOKS = WebhookReceiver()

os.environ["DATABASE_URL"] = DB_URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "erc8004.settings")
os.environ.setdefault("REDIS_KEY_PREFIX", f"bench-e2e-{os.getpid()}:")
os.environ["OUTBOUND_ALLOWLIST"] = "127.0.0.0/8"
os.environ["TELEGRAM_API_BASE_URL"] = TELEGRAM.base_url
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

import psycopg2  # noqa: E402
from web3 import HTTPProvider, Web3  # noqa: E402
from web3.logs import DISCARD  # noqa: E402

from indexing.devnet.anvil import AnvilProcess  # noqa: E402
from indexing.devnet.contracts import devnet_contract, devnet_deploy, devnet_register_chain  # noqa: E402

CHAIN_ID = 31337


def recreate_database() -> None:
    conn = psycopg2.connect(dbname="postgres", user="postgres", host="127.0.0.1")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DB_NAME}")
    conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _vm_hwm_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class BlockWatch(threading.Thread):
    """Stamps the first moment each block number is visible at the node (10 ms polls)."""

    def __init__(self, rpc_url: str) -> None:
        super().__init__(daemon=True)
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 5}))
        self.seen: dict[int, float] = {}  # block number → time.monotonic()
        self.stop = threading.Event()

    def run(self) -> None:
        last = -1
        while not self.stop.is_set():
            try:
                number = self.w3.eth.block_number
            except Exception:
                number = last
            now = time.monotonic()
            for n in range(last + 1, number + 1):
                self.seen.setdefault(n, now)
            last = max(last, number)
            self.stop.wait(0.01)


class Stack:
    """The stack's processes, each in its own session; stopped newest first."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str]) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append((name, proc))

    def check(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text()[-3000:]
                raise SystemExit(f"{name} exited with {proc.returncode}:\n{tail}")

    def peak_rss(self) -> dict[str, tuple[float, list[float]]]:
        """Per process: (its own VmHWM, its children's VmHWM) in MB."""
        return {
            name: (_vm_hwm_mb(proc.pid), [_vm_hwm_mb(c) for c in _proc_children(proc.pid)]) for name, proc in self.procs
        }

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def stack_start(stack: Stack, *, web_port: int, nudge: bool) -> None:
    bin_dir = Path(sys.executable).parent
    celery = [str(bin_dir / "celery"), "-A", "erc8004"]
    stack.start(
        "web",
        [
            str(bin_dir / "gunicorn"),
            "erc8004.wsgi",
            "-c",
            "python:erc8004.gunicorn_conf",
            "-b",
            f"127.0.0.1:{web_port}",
        ],
    )
    # The pools of deploy/docker-compose.yml.
    for queue, pool, concurrency in (
        ("indexing", "prefork", 2),
        ("triggers", "prefork", 2),
        ("actions", "threads", 32),
    ):
        stack.start(
            f"worker-{queue}",
            [*celery, "worker", "-Q", queue, "-n", f"{queue}-bench@%h", "-P", pool, "-c", str(concurrency), "-E"],
        )
    stack.start("beat", [*celery, "beat", "-s", str(stack.log_dir / "beat-schedule")])
    if nudge:
        stack.start("head-listener", [sys.executable, str(ROOT / "manage.py"), "head_listener"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=5.0, help="matching events sent per second")
    parser.add_argument("--webhooks", type=int, default=100, help="webhook triggers (one agent each)")
    parser.add_argument("--telegrams", type=int, default=10, help="Telegram triggers (one agent each)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="the chain's poll_interval_seconds")
    parser.add_argument("--warmup", type=int, default=20, help="events sent (and not measured) before the run")
    parser.add_argument("--nudge", action="store_true", help="also run manage.py head_listener")
    parser.add_argument(
        "--block-time",
        type=float,
        default=1.0,
        help="anvil's block interval; 1.02 sweeps the blocks' phase against beat's 1 s tick twice in a run",
    )
    args = parser.parse_args()

    load_start = os.getloadavg()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    from actions.services import destination_create
    from erc8004.models import Organization
    from erc8004.queues import redis_client
    from indexing.models import ChainCursor
    from triggers.services import ActionSpec, trigger_create

    mode = "nudge" if args.nudge else "polling"
    log_dir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    metrics_dir = log_dir / "prometheus"
    metrics_dir.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    stack = Stack(env, log_dir)
    TELEGRAM.tokens.add(BOT_TOKEN)
    TELEGRAM.up()
    WEBHOOKS.secrets.append(SECRET)
    WEBHOOKS.up()
    watch: BlockWatch | None = None
    try:
        with AnvilProcess(block_time=args.block_time, accounts=4) as anvil:
            w3 = Web3(HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 30}))
            owner, client = w3.eth.accounts[0], w3.eth.accounts[1]
            deployment = devnet_deploy(w3=w3)
            identity = devnet_contract(w3=w3, deployment=deployment, role="identity")
            reputation = devnet_contract(w3=w3, deployment=deployment, role="reputation")
            n_agents = args.webhooks + args.telegrams
            hashes = [identity.functions.register().transact({"from": owner, "gas": 300_000}) for _ in range(n_agents)]
            agent_ids = []
            for tx in hashes:
                receipt = w3.eth.wait_for_transaction_receipt(tx, timeout=60)
                agent_ids += [
                    e["args"]["agentId"] for e in identity.events.Registered().process_receipt(receipt, errors=DISCARD)
                ]
            print(
                f"anvil {anvil.rpc_url} ({args.block_time:g} s blocks); contracts deployed; {len(agent_ids)} agents",
                flush=True,
            )

            connections.close_all()
            recreate_database()
            call_command("migrate", verbosity=0)
            chain = devnet_register_chain(rpc_url=anvil.rpc_url, chain_id=CHAIN_ID, deployment=deployment, name="Bench")
            chain.poll_interval_seconds = args.poll_interval
            chain.save(update_fields=["poll_interval_seconds"])
            org = Organization.objects.create(name="Bench e2e", slug="bench-e2e")
            for i, agent in enumerate(agent_ids):
                if i < args.webhooks:
                    destination = destination_create(
                        organization=org,
                        name=f"hook-{i:03d}",
                        channel="webhook",
                        config={"url": f"{WEBHOOKS.base_url}/hooks/{i}", "timeout": 10},
                        secret=SECRET,
                    )
                else:
                    destination = destination_create(
                        organization=org,
                        name=f"chat-{i:03d}",
                        channel="telegram",
                        config={"chat_id": str(1000 + i)},
                        secret=BOT_TOKEN,
                    )
                trigger_create(
                    organization=org,
                    name=f"feedback on agent {agent}",
                    event_types=["NewFeedback"],
                    conditions={"type": "agent_id", "values": [str(agent)]},
                    actions=[ActionSpec(destination=destination)],
                )
            connections.close_all()
            dispatch = settings.CELERY_BEAT_SCHEDULE["indexing-dispatch-polls"]["schedule"]
            print(
                f"{args.webhooks} webhook + {args.telegrams} Telegram triggers; chain poll interval "
                f"{args.poll_interval:g} s, beat dispatch every {dispatch:g} s; "
                f"mode {mode}; logs in {log_dir}",
                flush=True,
            )

            stack_start(stack, web_port=_free_port(), nudge=args.nudge)
            head = w3.eth.block_number
            deadline = time.monotonic() + 90
            while True:
                stack.check()
                indexed = (
                    ChainCursor.objects.filter(chain_id=CHAIN_ID).values_list("last_block_number", flat=True).first()
                )
                if indexed is not None and indexed >= head:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the indexer did not catch up (indexed {indexed}, head {head})")
                time.sleep(0.2)
            connections.close_all()

            watch = BlockWatch(anvil.rpc_url)
            watch.start()
            sent: list[str] = []

            def send(count: int) -> list[str]:
                """``count`` giveFeedback transactions at ``--rate`` per second, round-robin over the agents."""
                hashes: list[str] = []
                started = time.monotonic()
                for k in range(count):
                    delay = started + k / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    agent = agent_ids[(len(sent) + k) % len(agent_ids)]
                    tx = reputation.functions.giveFeedback(agent, 80, 0, "bench", "e2e", "", "", b"\0" * 32).transact(
                        {"from": client, "gas": 500_000}
                    )
                    hashes.append(tx.to_0x_hex())
                sent.extend(hashes)
                return hashes

            def arrivals() -> dict[str, float]:
                """tx hash → first arrival (monotonic) at a receiver, from the delivered bodies."""
                found: dict[str, float] = {}
                with WEBHOOKS.lock:
                    requests = [r for r in WEBHOOKS.requests if r.status == 200]
                with TELEGRAM.lock:
                    messages = list(TELEGRAM.messages)
                for r in requests:
                    tx = json.loads(r.body)["event"]["transaction_hash"]
                    found[tx] = min(found.get(tx, r.at), r.at)
                for m in messages:
                    match = TX_HASH.search(m.plain_text)
                    if match:
                        found[match.group(0)] = min(found.get(match.group(0), m.at), m.at)
                return found

            def wait_delivered(hashes: list[str], timeout: float) -> None:
                deadline = time.monotonic() + timeout
                while True:
                    got = arrivals()
                    missing = [h for h in hashes if h not in got]
                    if not missing:
                        return
                    stack.check()
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{len(missing)} of {len(hashes)} deliveries missing after {timeout:.0f}s")
                    time.sleep(0.1)

            warm = send(args.warmup)
            wait_delivered(warm, 120)
            print(f"warm-up: {len(warm)} events delivered", flush=True)

            t_send = time.monotonic()
            measured = send(args.events)
            send_s = time.monotonic() - t_send
            wait_delivered(measured, 120)
            print(f"sent {len(measured)} events in {send_s:.1f} s; all delivered", flush=True)
            watch.stop.set()
            watch.join()

            rss = stack.peak_rss()
            got = arrivals()
            mono_minus_wall = time.monotonic() - time.time()
            blocks: dict[int, int] = {}
            lat_seen, lat_ts, seen_minus_ts = [], [], []
            for tx in measured:
                number = w3.eth.get_transaction_receipt(tx)["blockNumber"]
                if number not in blocks:
                    blocks[number] = w3.eth.get_block(number)["timestamp"]
                    seen_minus_ts.append(watch.seen[number] - mono_minus_wall - blocks[number])
                lat_seen.append(got[tx] - watch.seen[number])
                lat_ts.append(got[tx] - mono_minus_wall - blocks[number])
            first, last = min(got[h] for h in measured), max(got[h] for h in measured)
            per_s = (len(measured) - 1) / max(1e-9, last - first)
            webhook_n = sum(1 for r in WEBHOOKS.requests if r.status == 200)
            telegram_n = len(TELEGRAM.messages)
            duplicates = (webhook_n + telegram_n) - len(got)
            load_end = os.getloadavg()

            def fmt(values: list[float]) -> str:
                return " ".join(f"p{int(q * 100)} {percentile(values, q):.2f}s" for q in (0.5, 0.95, 0.99)) + (
                    f" max {max(values):.2f}s"
                )

            print(f"mode: {mode}", flush=True)
            print(
                f"deliveries: {len(measured)} events measured over {len(blocks)} blocks, one delivery each "
                f"(receivers total {webhook_n} webhooks + "
                f"{telegram_n} Telegram incl. warm-up; duplicates {duplicates}; "
                f"webhook refusals {sum(1 for r in WEBHOOKS.requests if r.status != 200)}, "
                f"Telegram refusals {len(TELEGRAM.refused)})",
                flush=True,
            )
            print(f"latency (arrival - block seen at the node): {fmt(lat_seen)}", flush=True)
            print(f"latency (arrival - block timestamp, 1 s resolution): {fmt(lat_ts)}", flush=True)
            print(
                f"block seen - block timestamp: min {min(seen_minus_ts):.2f}s median "
                f"{percentile(seen_minus_ts, 0.5):.2f}s max {max(seen_minus_ts):.2f}s",
                flush=True,
            )
            print(f"deliveries per second at the receivers: {per_s:.1f} (offered {args.rate:g} events/s)", flush=True)
            for name, (own, children) in rss.items():
                kids = f" + children {', '.join(f'{c:.0f}' for c in children)}" if children else ""
                print(f"  peak RSS {name}: {own:.0f} MB{kids}", flush=True)
            print(
                f"machine: {os.cpu_count()} CPUs; load average (1/5/15 min) at start "
                f"{load_start[0]:.2f}/{load_start[1]:.2f}/{load_start[2]:.2f}, at end "
                f"{load_end[0]:.2f}/{load_end[1]:.2f}/{load_end[2]:.2f}",
                flush=True,
            )
            print(
                f"p50_s={percentile(lat_seen, 0.5):.2f} p95_s={percentile(lat_seen, 0.95):.2f} "
                f"p99_s={percentile(lat_seen, 0.99):.2f} deliveries_per_s={per_s:.1f}",
                flush=True,
            )
    finally:
        if watch is not None:
            watch.stop.set()
        stack.stop()
        WEBHOOKS.down()
        TELEGRAM.down()
        client = redis_client()
        for key in client.scan_iter(match=settings.REDIS_KEY_PREFIX + "*", count=1000):
            client.delete(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
