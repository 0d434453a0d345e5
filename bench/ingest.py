"""Ingestion benchmark: the full indexer against the RPC + decode floor, in one run.

    .venv/bin/python bench/ingest.py [--events 20000]

1. Starts anvil (300M gas blocks), deploys the contracts, and drives a seeded mixed
   workload of at least ``--events`` events (every event type, legacy shapes too).
2. Floor: fetches the same logs over JSON-RPC with the indexer's ranges and decodes
   them (eth-abi via indexing.decoding) — no database.
3. Indexer: a fresh PostgreSQL database (``erc8004_bench_ingest``), then
   ``manage.py index_chain --until-caught-up`` in a subprocess — the same code a
   worker runs (poll, headers, verify, events + projections + cursor per batch).
   Its peak RSS is the child's own VmHWM (ru_maxrss would include this parent's
   resident set, inherited across fork and exec).
4. Repeats step 3 on the first half of the history to show the peak RSS does not
   grow with history length.

The last line is ``key=value`` pairs for scripts. Targets (2-core machine): at
least 5,000 events/s, at most 4x the floor, peak RSS under 300 MB.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_NAME = "erc8004_bench_ingest"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
os.environ["DATABASE_URL"] = DB_URL
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "erc8004.settings")
os.environ.setdefault("REDIS_KEY_PREFIX", f"bench-ingest-{os.getpid()}:")

import django  # noqa: E402

django.setup()

import psycopg2  # noqa: E402
from web3 import HTTPProvider, Web3  # noqa: E402

from indexing.decoding import known_topics, log_decode  # noqa: E402
from indexing.devnet.anvil import AnvilProcess  # noqa: E402
from indexing.devnet.contracts import devnet_deploy, devnet_register_chain  # noqa: E402
from indexing.devnet.workload import Workload  # noqa: E402
from indexing.rpc import RpcClient, logs_fetch  # noqa: E402

MAX_BLOCK_RANGE = 2000  # the Chain default the indexer uses


def recreate_database() -> None:
    conn = psycopg2.connect(dbname="postgres", user="postgres", host="127.0.0.1")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {DB_NAME}")
    conn.close()


def manage(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=DB_URL)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=capture,
        text=True,
    )


def floor(rpc_url: str, addresses: list[str], first: int, last: int) -> tuple[int, float]:
    client = RpcClient(urls=[rpc_url], chain_id=31337, timeout=60)
    started = time.perf_counter()
    logs, _ = logs_fetch(
        client,
        addresses=addresses,
        topics0=known_topics(),
        from_block=first,
        to_block=last,
        span=MAX_BLOCK_RANGE,
        max_span=MAX_BLOCK_RANGE,
    )
    decoded = [log_decode(log) for log in logs]
    return len(decoded), time.perf_counter() - started


INDEX_AND_REPORT = """
import re, time
from indexing.poller import chain_poll
def hwm():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) // 1024
started, events, polls = time.monotonic(), 0, []
while True:
    result = chain_poll(chain_id=31337)
    events += result.events
    polls.append(hwm())
    if result.outcome == "error":
        raise SystemExit(result.error)
    if not result.behind and result.outcome not in ("busy", "retry"):
        break
print(f"{events} events in {time.monotonic() - started:.2f}s")
print("hwm_per_poll_mb", polls)
# VmHWM, not ru_maxrss: ru_maxrss keeps the high-water mark of the process this one
# was forked from (this benchmark, holding the workload) across exec.
print("peak_rss_kb", hwm() * 1024)
"""


def index(rpc_url: str, deployment) -> tuple[int, float, float]:
    """Index the chain in a fresh database, in a child process (a worker's code path);
    returns (events, seconds, the child's own peak RSS in MB)."""
    from django.db import connections

    connections.close_all()
    recreate_database()
    manage("migrate", "--noinput", capture=True)
    devnet_register_chain(rpc_url=rpc_url, chain_id=31337, deployment=deployment, name="Bench")
    connections.close_all()
    out = manage("shell", "-c", INDEX_AND_REPORT, capture=True).stdout
    match = re.search(r"(\d+) events in ([\d.]+)s", out)
    rss = re.search(r"peak_rss_kb (\d+)", out)
    per_poll = re.search(r"hwm_per_poll_mb (\[.*\])", out)
    if per_poll:
        print(f"  child peak RSS after each poll (MB): {per_poll.group(1)}")
    if not match or not rss:
        raise SystemExit(f"unexpected index_chain output:\n{out[-2000:]}")
    return int(match.group(1)), float(match.group(2)), int(rss.group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with AnvilProcess(accounts=20, gas_limit=300_000_000) as anvil:
        w3 = Web3(HTTPProvider(anvil.rpc_url))
        deployment = devnet_deploy(w3=w3)
        workload = Workload(w3, deployment, seed=args.seed)
        started = time.perf_counter()
        workload.run_events(args.events // 2)
        half_s = time.perf_counter() - started
        half_events, half_seconds, half_rss = index(anvil.rpc_url, deployment)
        print(f"indexer on the first half ({half_events} events): {half_seconds:.2f}s, peak RSS {half_rss:.0f} MB")
        started = time.perf_counter()
        workload.run_events(args.events - args.events // 2)
        generate_s = half_s + time.perf_counter() - started
        last = w3.eth.block_number
        workload.close()
        print(f"workload: {workload.event_total} events in {last} blocks, generated in {generate_s:.1f}s")

        addresses = list(deployment.addresses().values())
        floor_events, floor_s = floor(anvil.rpc_url, addresses, deployment.block, last)
        print(
            f"floor (eth_getLogs + eth-abi decode, no DB): {floor_events} logs in {floor_s:.2f}s "
            f"= {floor_events / floor_s:,.0f} logs/s"
        )
        events, seconds, rss = index(anvil.rpc_url, deployment)
        print(
            f"indexer (PostgreSQL, events + projections): {events} events in {seconds:.2f}s "
            f"= {events / seconds:,.0f} events/s, peak RSS {rss:.0f} MB"
        )
        if events != floor_events:
            print(f"WARNING: indexed {events} events but the floor fetched {floor_events} logs")

    ratio = seconds / floor_s
    print(f"events={events} events_per_s={events / seconds:.0f} floor_ratio={ratio:.2f} peak_rss_mb={rss:.0f}")


if __name__ == "__main__":
    main()
