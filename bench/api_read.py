"""Read API benchmark: 100,000 agents and 1,000,000 feedback rows in PostgreSQL,
gunicorn on loopback, concurrent HTTP clients.

    .venv/bin/python bench/api_read.py                 # generate (once) and measure
    .venv/bin/python bench/api_read.py --regenerate    # drop the bench data first

Measures, each against a running gunicorn (started here, stopped at the end):

* ``agents_list``: ``/api/v1/agents/?ordering=best_average`` — every client walks the
  keyset pages (first page, then ``next`` up to 20 pages deep, then again);
* ``agent_detail``: ``/api/v1/agents/{id}/`` for random agents with feedback
  (reputation per tag and on-chain summary computed on the fly);
* ``feedback_list``: ``/api/v1/feedback/?tag1=starred&value_min=80&revoked=false``,
  walking pages the same way;

p50/p95 latency with 4 concurrent clients per endpoint, then requests/s with 16
concurrent clients on an even mix. The last line is machine-readable.

Data is generated straight into a separate database (``DATABASE_URL``, default
``postgres://postgres@127.0.0.1:5432/erc8004_bench``) with COPY, after the project's
migrations: realistic shapes (skewed feedback per agent, five tags with their own
decimals, 3% revoked, 5% with a response), not a chain replay.
"""

from __future__ import annotations

import argparse
import csv
import functools
import http.client
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2
from eth_utils import to_checksum_address

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/erc8004_bench"
CHAIN_ID = 8453  # Base: its deployments are loaded (disabled) by indexing migration 0002
IDENTITY = "0x8004A169FB4a3325136EB29fA0ceB6D2e539a432"
REPUTATION = "0x8004BAa17C55a88189AE136b182e5fdA19dE9b63"
T0 = datetime(2026, 1, 29, tzinfo=UTC)
# tag1 → (valueDecimals, value range) in the spirit of the spec's examples.
TAGS = {
    "starred": (0, (0, 100)),
    "uptime": (2, (9000, 10000)),
    "reachable": (0, (0, 1)),
    "successRate": (0, (50, 100)),
    "responseTime": (0, (50, 2000)),
}
SERVICE_SETS = [
    [{"name": "MCP", "endpoint": "https://mcp.example/{i}", "version": "2025-06-18"}],
    [{"name": "A2A", "endpoint": "https://a2a.example/{i}/.well-known/agent-card.json", "version": "0.3.0"}],
    [{"name": "web", "endpoint": "https://web.example/{i}"}],
    [
        {"name": "MCP", "endpoint": "https://mcp.example/{i}", "version": "2025-06-18"},
        {"name": "A2A", "endpoint": "https://a2a.example/{i}/.well-known/agent-card.json", "version": "0.3.0"},
    ],
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@functools.cache
def address(n: int) -> str:
    return to_checksum_address("0x" + f"{n:040x}")  # stored form: EIP-55, as the indexer writes


#
# Data
#


def ensure_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = psycopg2.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username, password=parts.password, dbname="postgres"
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
            log(f"created database {name}")
    admin.close()


def django_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="erc8004.settings",
        DATABASE_URL=url,
        ERC8004_ENV="bench",
        DJANGO_DEBUG="false",
        API_THROTTLE_ANON="",  # every client is 127.0.0.1: measure the API, not the throttle
        LOG_LEVEL="WARNING",
        REDIS_KEY_PREFIX="erc8004-bench:",
    )
    return env


def copy_rows(cur, table: str, columns: list[str], rows) -> int:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    count = 0
    for row in rows:
        writer.writerow(["\\N" if v is None else v for v in row])
        count += 1
    buffer.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer)
    return count


def generate(url: str, *, agents: int, feedback: int, seed: int = 8004) -> None:
    rng = random.Random(seed)
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM agents_agent")
    if cur.fetchone()[0] >= agents:
        log("bench data present; reusing it (--regenerate to rebuild)")
        conn.close()
        return
    log("truncating bench tables")
    cur.execute(
        "TRUNCATE agents_feedbackfile, agents_feedbackresponse, agents_feedback, agents_registrationfile, "
        "agents_agenttagstat, agents_agentmetadata, agents_validation, agents_agent, indexing_chainevent CASCADE"
    )
    started = time.monotonic()
    trust_sets = [[], ["reputation"], ["reputation", "crypto-economic"], ["tee-attestation"]]

    def agent_rows():
        for i in range(agents):
            services = [{**s, "endpoint": s["endpoint"].format(i=i)} for s in SERVICE_SETS[i % len(SERVICE_SETS)]]
            names = {s["name"] for s in services}
            registered = T0 + timedelta(seconds=i * 30)
            yield (
                CHAIN_ID,
                IDENTITY,
                i,
                address(10**6 + i % 60_000),
                "",
                f"https://agents.example/{i}.json",
                address(2 * 10**6 + i) if i % 3 == 0 else "",
                True,
                24_339_871 + i * 15,
                registered.isoformat(),
                "0x" + f"{i:064x}",
                24_339_871 + i * 15,
                registered.isoformat(),
                registered.isoformat(),
                0,
                None,
                0,
                0,
                None,
                f"Agent {i} {rng.choice(['weather', 'trading', 'search', 'translation', 'coding'])}",
                f"An ERC-8004 agent number {i} that helps with things.",
                f"https://img.example/{i}.png",
                i % 10 != 0,
                i % 4 == 0,
                json.dumps(trust_sets[i % len(trust_sets)]),
                json.dumps(services),
                "MCP" in names,
                "A2A" in names,
                "web" in names,
                i % 5 != 0,
            )

    agent_columns = [
        "chain_id",
        "identity_address",
        "agent_id",
        "owner",
        "approved",
        "agent_uri",
        "agent_wallet",
        "registration_seen",
        "registered_block",
        "registered_at",
        "registered_tx",
        "updated_block",
        "updated_at",
        "last_activity_at",
        "feedback_count",
        "feedback_average",
        "feedback_clients",
        "validation_count",
        "validation_average",
        "name",
        "description",
        "image",
        "active",
        "x402_support",
        "supported_trust",
        "services",
        "has_mcp",
        "has_a2a",
        "has_web",
        "registrations_backlink",
    ]
    n = copy_rows(cur, "agents_agent", agent_columns, agent_rows())
    log(f"{n} agents copied")
    cur.execute("SELECT agent_id, id FROM agents_agent WHERE chain_id = %s", [CHAIN_ID])
    pk_of = dict(cur.fetchall())
    cur.execute(
        "INSERT INTO agents_registrationfile (agent_id, uri, status, error, attempts, requested_at, fetched_at, "
        "source_url, content_type, size, content_hash, raw, parsed, next_refetch_at, updated_at) "
        "SELECT id, agent_uri, 'ok', '', 1, now(), now(), agent_uri, 'application/json', 400, '0x' || md5(agent_uri), "
        "json_build_object('name', name)::text, json_build_object('name', name), now() + interval '1 day', now() "
        "FROM agents_agent"
    )
    log("registration files inserted")

    tag_names = list(TAGS)
    next_index: dict[tuple[int, int], int] = {}
    responded: list[tuple[int, int, int, int]] = []

    def feedback_rows():
        for j in range(feedback):
            agent_id = int(agents * rng.random() ** 3)  # skewed: a few agents get most feedback
            client = rng.randrange(50_000)
            key = (agent_id, client)
            index = next_index.get(key, 0) + 1
            next_index[key] = index
            tag1 = tag_names[j % len(tag_names)] if j % 17 else ""
            decimals, (low, high) = TAGS.get(tag1, (0, (0, 100)))
            value = rng.randint(low, high)
            created = T0 + timedelta(seconds=j * 3)
            revoked = j % 33 == 0
            if j % 20 == 0:
                responded.append((pk_of[agent_id], client, index, j))
            yield (
                pk_of[agent_id],
                REPUTATION,
                address(3 * 10**6 + client),
                index,
                value,
                decimals,
                str(Decimal(value).scaleb(-decimals)),
                tag1,
                _text_hash(tag1),
                "day" if tag1 == "uptime" else "",
                _text_hash("day" if tag1 == "uptime" else ""),
                "",
                f"ipfs://bafy{j:055d}" if j % 4 == 0 else "",
                "0x" + "00" * 32,
                revoked,
                created.isoformat() if revoked else None,
                "v1",
                24_339_873 + j,
                created.isoformat(),
                "0x" + f"{j:064x}",
            )

    feedback_columns = [
        "agent_id",
        "reputation_address",
        "client_address",
        "feedback_index",
        "value",
        "value_decimals",
        "value_normalized",
        "tag1",
        "tag1_hash",
        "tag2",
        "tag2_hash",
        "endpoint",
        "feedback_uri",
        "feedback_hash",
        "revoked",
        "revoked_at",
        "abi_version",
        "created_block",
        "created_at",
        "tx_hash",
    ]
    n = copy_rows(cur, "agents_feedback", feedback_columns, feedback_rows())
    log(f"{n} feedback rows copied ({time.monotonic() - started:.0f}s)")

    def event_rows():
        for _agent_pk, client, index, j in responded:
            yield (
                CHAIN_ID,
                30_000_000 + j,
                "0x" + f"{j:064x}",
                (T0 + timedelta(seconds=j * 3 + 60)).isoformat(),
                "0x" + f"{j + 1:064x}",
                0,
                0,
                REPUTATION,
                "reputation",
                "ResponseAppended",
                "v1",
                None,
                json.dumps({"clientAddress": address(3 * 10**6 + client), "feedbackIndex": index}),
                False,
                False,
                datetime.now(tz=UTC).isoformat(),
            )

    event_columns = [
        "chain_id",
        "block_number",
        "block_hash",
        "block_timestamp",
        "tx_hash",
        "tx_index",
        "log_index",
        "address",
        "registry",
        "event_type",
        "abi_version",
        "agent_id",
        "args",
        "removed",
        "is_backfill",
        "indexed_at",
    ]
    copy_rows(cur, "indexing_chainevent", event_columns, event_rows())
    # Responses: join each response event to its feedback by (client, index) within the event's agent.
    cur.execute(
        "INSERT INTO agents_feedbackresponse (agent_id, feedback_id, reputation_address, client_address, "
        "feedback_index, responder, response_uri, response_hash, created_block, created_at, event_id) "
        "SELECT f.agent_id, f.id, f.reputation_address, f.client_address, f.feedback_index, %s, 'ipfs://response', "
        "'0x' || repeat('00', 32), e.block_number, e.block_timestamp, e.id "
        "FROM indexing_chainevent e JOIN agents_feedback f ON f.tx_hash = '0x' || lpad(to_hex(e.block_number - "
        "30000000), 64, '0') WHERE e.event_type = 'ResponseAppended'",
        [address(9)],
    )
    log(f"{len(responded)} responses inserted")
    cur.execute(
        "UPDATE agents_agent a SET feedback_count = s.c, feedback_average = round(s.t / s.c, 18), "
        "feedback_clients = s.cl FROM (SELECT agent_id, count(*) c, sum(value_normalized) t, "
        "count(DISTINCT client_address) cl FROM agents_feedback WHERE NOT revoked GROUP BY agent_id) s "
        "WHERE a.id = s.agent_id"
    )
    cur.execute(
        "INSERT INTO agents_feedbackfile (feedback_id, uri, status, error, attempts, requested_at, fetched_at, "
        "source_url, content_type, size, content_hash, raw, parsed, updated_at, hash_status, text) "
        "SELECT id, feedback_uri, 'ok', '', 1, now(), now(), '', 'application/json', 60, '', '{}', '{}', now(), "
        "'absent', 'Great agent, would use again.' FROM agents_feedback WHERE feedback_uri <> ''"
    )
    conn.commit()
    log("aggregates and feedback files written; VACUUM ANALYZE")
    conn.autocommit = True
    cur.execute("VACUUM ANALYZE")
    conn.close()
    log(f"generated in {time.monotonic() - started:.0f}s")


def _text_hash(value: str) -> str:
    import hashlib

    return hashlib.sha256(value.encode("utf-8", errors="replace")).hexdigest()[:32]


#
# Load
#


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(url: str, port: int, workers: int, threads: int) -> subprocess.Popen:
    command = [
        str(Path(PYTHON).parent / "gunicorn"),
        "erc8004.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, cwd=ROOT, env=django_env(url), start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status, _ = get(port, "/api/v1/chains/")
            if status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    stop(process)
    raise RuntimeError("gunicorn did not start")


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if own:
        conn.close()
    return response.status, body


class Walker:
    """A client's next request for one scenario (keyset walks follow ``next``)."""

    def __init__(self, kind: str, rng: random.Random, agent_ids: list[int]) -> None:
        self.kind, self.rng, self.agent_ids = kind, rng, agent_ids
        self.next_path: str | None = None
        self.depth = 0

    def path(self) -> str:
        if self.kind == "agent_detail":
            return f"/api/v1/agents/{CHAIN_ID}:{self.rng.choice(self.agent_ids)}/"
        if self.next_path and self.depth < 20:
            return self.next_path
        self.depth = 0
        if self.kind == "agents_list":
            return "/api/v1/agents/?ordering=best_average"
        return "/api/v1/feedback/?tag1=starred&value_min=80&revoked=false"

    def saw(self, body: bytes) -> None:
        if self.kind == "agent_detail":
            return
        link = json.loads(body).get("next")
        self.next_path = link[link.index("/api/") :] if link else None
        self.depth += 1


def run_clients(port: int, kinds: list[str], clients: int, *, requests: int = 0, seconds: float = 0.0, agent_ids):
    """``clients`` threads on keep-alive connections; stop after ``requests`` in total
    or ``seconds``. Returns (latencies_ms per kind, completed, elapsed)."""
    latencies: dict[str, list[float]] = {k: [] for k in kinds}
    lock = threading.Lock()
    counter = {"n": 0}
    errors: list[str] = []
    start = time.monotonic()

    def client(number: int) -> None:
        rng = random.Random(number)
        walkers = {k: Walker(k, rng, agent_ids) for k in kinds}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = number
        while True:
            with lock:
                if (requests and counter["n"] >= requests) or (seconds and time.monotonic() - start >= seconds):
                    break
                counter["n"] += 1
            kind = kinds[i % len(kinds)]
            i += 1
            walker = walkers[kind]
            path = walker.path()
            t0 = time.perf_counter()
            try:
                status, body = get(port, path, conn)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status, body = get(port, path, conn)
            elapsed = (time.perf_counter() - t0) * 1000
            if status != 200:
                errors.append(f"{status} {path}")
                continue
            walker.saw(body)
            with lock:
                latencies[kind].append(elapsed)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, e.g. {errors[:3]}")
    return latencies, counter["n"], time.monotonic() - start


def server_cpu_seconds(master_pid: int) -> float:
    """User + system CPU of gunicorn's workers so far (Linux /proc): CPU per request is
    the figure that does not depend on what else the machine is running."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:  # field 4 (ppid) after the command name
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--feedback", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per endpoint at 4 clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the 16-client run")
    parser.add_argument("--workers", type=int, default=max(2, (os.cpu_count() or 2) * 2))
    parser.add_argument("--threads", type=int, default=2, help="gthread threads per worker")
    parser.add_argument("--regenerate", action="store_true", help="drop and rebuild the bench data")
    parser.add_argument("--generate-only", action="store_true", help="build the data, measure nothing")
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_DB
    if "bench" not in urlsplit(url).path:
        sys.exit(f"refusing to use {url}: the database name must contain 'bench'")
    ensure_database(url)
    log("migrating the bench database")
    subprocess.run([PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=django_env(url), check=True)
    if args.regenerate:
        conn = psycopg2.connect(url)
        conn.cursor().execute("TRUNCATE agents_agent, indexing_chainevent CASCADE")
        conn.commit()
        conn.close()
    generate(url, agents=args.agents, feedback=args.feedback)
    if args.generate_only:
        return
    conn = psycopg2.connect(url)
    cur = conn.cursor()
    cur.execute("SELECT agent_id FROM agents_agent WHERE chain_id = %s AND feedback_count > 0", [CHAIN_ID])
    agent_ids = [int(r[0]) for r in cur.fetchall()]
    cur.execute("SELECT count(*) FROM agents_agent")
    n_agents = cur.fetchone()[0]
    cur.execute("SELECT count(*) FROM agents_feedback")
    n_feedback = cur.fetchone()[0]
    conn.close()
    log(f"data: {n_agents} agents, {n_feedback} feedback; {len(agent_ids)} agents have feedback")

    port = free_port()
    log(f"starting gunicorn on 127.0.0.1:{port} ({args.workers} workers x {args.threads} threads)")
    process = start_gunicorn(url, port, args.workers, args.threads)
    results: dict[str, tuple[float, float]] = {}
    try:
        for kind in ("agents_list", "agent_detail", "feedback_list"):
            run_clients(port, [kind], 4, requests=200, agent_ids=agent_ids)  # warm caches and connections
            cpu_before = server_cpu_seconds(process.pid)
            latencies, done, elapsed = run_clients(port, [kind], 4, requests=args.requests, agent_ids=agent_ids)
            cpu_ms = (server_cpu_seconds(process.pid) - cpu_before) * 1000 / done
            values = latencies[kind]
            results[kind] = (pct(values, 50), pct(values, 95))
            log(
                f"{kind:14s} 4 clients: p50 {results[kind][0]:6.1f} ms  p95 {results[kind][1]:6.1f} ms  "
                f"max {max(values):6.1f} ms  mean {statistics.mean(values):6.1f} ms  ({done / elapsed:.0f} req/s, "
                f"{cpu_ms:.1f} ms gunicorn CPU/request, load {os.getloadavg()[0]:.1f})"
            )
        kinds = ["agents_list", "agent_detail", "feedback_list"]
        latencies, done, elapsed = run_clients(port, kinds, 16, seconds=args.seconds, agent_ids=agent_ids)
        rps = done / elapsed
        every = [v for k in kinds for v in latencies[k]]
        p50, p95 = pct(every, 50), pct(every, 95)
        log(
            f"mix, 16 clients: {rps:.0f} req/s over {elapsed:.0f}s; p50 {p50:.1f} ms p95 {p95:.1f} ms "
            f"(load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
        )
    finally:
        stop(process)
        log("gunicorn stopped")
    print(
        f"agents_list_p95_ms={results['agents_list'][1]:.1f} agent_detail_p95_ms={results['agent_detail'][1]:.1f} "
        f"feedback_list_p95_ms={results['feedback_list'][1]:.1f} rps_16={rps:.0f}"
    )


if __name__ == "__main__":
    main()
