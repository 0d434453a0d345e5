"""``make run``: the whole pipeline on one machine, embedded by default.

Starts, in dependency order (the seed runbook's start-up order, on one host):

1. Redis — an embedded Redis-protocol server unless ``REDIS_URL`` is set;
2. the database — SQLite under var/ unless ``DATABASE_URL`` is set; migrations;
3. an anvil devnet with the project's ERC-8004 contracts, registered as a chain;
4. the demo objects (``demo_setup``: user, organization, webhook destination, two
   triggers) and the demo webhook receiver (``demo_receiver``) they deliver to;
5. the web server (gunicorn), one Celery worker per queue, beat, the new-heads
   listener (``head_listener``: a poll as soon as anvil mines a block), and Flower;
6. a demo workload that keeps producing on-chain events;

then prints where to look and a live one-line progress summary. Ctrl-C (or SIGTERM)
stops every process, newest first, and waits for each: the workload stops producing,
beat stops scheduling, workers finish or requeue their tasks, and only then do the
web server, the receiver, the chain and the broker go away.

Every child runs in its own session, so Ctrl-C in the terminal reaches only this
supervisor, which then stops the children in order. Their pids are written to
``<var>/run/run.json`` with the URLs (tools and the test of this command read it).

This command imports no app: every step is a subprocess (``manage.py <command>``,
``celery``, ``gunicorn``), so the project package stays on floor 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

BIN = Path(sys.executable).parent


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


@dataclass
class Stack:
    """The child processes of one run, stopped newest first."""

    env: dict[str, str]
    log_dir: Path
    children: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        self.children.append((name, proc))
        return proc

    def run(self, name: str, argv: list[str], timeout: float = 300) -> None:
        result = subprocess.run(
            argv, env=self.env, cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=timeout, check=False
        )
        (self.log_dir / f"{name}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise CommandError(f"{name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.children}

    def check_alive(self) -> str | None:
        for name, proc in self.children:
            if proc.poll() is not None:
                return f"{name} exited with status {proc.returncode} (see {self.log_dir / (name + '.log')})"
        return None

    def stop(self, timeout: float = 30) -> None:
        """Newest first, each waited for: producers stop before workers drain, and
        workers finish (or requeue) before the broker and the chain go away."""
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                print(f"  {name}: killed after {timeout:.0f}s", flush=True)


class Command(BaseCommand):
    help = "Run the whole stack locally: devnet, web, workers, beat, Flower, demo workload."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="Web server port")
        parser.add_argument("--flower-port", type=int, default=5555)
        parser.add_argument("--receiver-port", type=int, default=0, help="Demo webhook receiver port (0 = free)")
        parser.add_argument("--rate", type=float, default=2.0, help="Demo workload operations per second")
        parser.add_argument("--seed", type=int, default=8004)
        parser.add_argument("--block-time", type=int, default=1, help="anvil seconds per block")
        parser.add_argument("--duration", type=float, default=0, help="Stop after this many seconds (0 = Ctrl-C)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts) -> None:
        log_dir = Path(settings.VAR_DIR) / "run"
        log_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("run.json", "received.jsonl"):
            (log_dir / stale).unlink(missing_ok=True)
        env = dict(os.environ)
        env.setdefault("DJANGO_SETTINGS_MODULE", "erc8004.settings")
        env.setdefault("ERC8004_ENV", "development")
        env["ERC8004_VAR_DIR"] = str(settings.VAR_DIR)
        env["PYTHONUNBUFFERED"] = "1"
        # The demo receiver is on loopback, which outbound HTTP refuses by default
        # (SSRF guard): allow it for this run's processes only.
        allow = [a for a in env.get("OUTBOUND_ALLOWLIST", "").split(",") if a]
        env["OUTBOUND_ALLOWLIST"] = ",".join([*allow, "127.0.0.1/32"])
        # Children of one run share one metrics directory (multi-process Prometheus),
        # wiped at start: counters restart at zero with the processes that wrote them.
        metrics_dir = Path(env.get("PROMETHEUS_MULTIPROC_DIR") or log_dir / "prometheus")
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        stack = Stack(env=env, log_dir=log_dir)
        python = str(BIN / "python")
        manage = [python, str(Path(settings.BASE_DIR) / "manage.py")]

        def on_term(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term)
        started = time.monotonic()
        try:
            self._start(stack, manage, python, opts)
            self._watch(stack, manage, opts, started)
        except KeyboardInterrupt:
            pass
        finally:
            self.stdout.write("\nstopping…")
            stack.stop()
            self.stdout.write(self.style.SUCCESS("stopped cleanly"))

    def _start(self, stack: Stack, manage: list[str], python: str, opts: dict) -> None:
        env = stack.env
        embedded = []
        if "REDIS_URL" not in os.environ and "CELERY_BROKER_URL" not in os.environ:
            port = _free_port(6390)
            stack.start("redis", [python, "-m", "erc8004.embedded_redis", "--port", str(port)])
            if not _wait_port(port, 20):
                raise CommandError(f"embedded redis did not start (see {stack.log_dir / 'redis.log'})")
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            embedded.append(f"embedded Redis on :{port}")
        if "DATABASE_URL" not in os.environ:
            embedded.append(f"SQLite at {Path(settings.VAR_DIR) / 'erc8004.sqlite3'}")
        self.stdout.write("erc8004 — " + ("; ".join(embedded) if embedded else "external PostgreSQL/Redis"))

        self.stdout.write("migrating…")
        stack.run("migrate", [*manage, "migrate", "--noinput"])

        anvil_port = _free_port(8545)
        stack.start(
            "anvil", [*manage, "devnet_anvil", "--port", str(anvil_port), "--block-time", str(opts["block_time"])]
        )
        if not _wait_port(anvil_port, 30):
            raise CommandError(f"anvil did not start (see {stack.log_dir / 'anvil.log'})")
        rpc_url = f"http://127.0.0.1:{anvil_port}"
        env["DEVNET_RPC_URL"] = rpc_url
        self.stdout.write("deploying the ERC-8004 contracts…")
        stack.run("deploy", [*manage, "devnet_deploy", "--rpc-url", rpc_url])
        stack.run("collectstatic", [*manage, "collectstatic", "--noinput"])

        receiver_port = opts["receiver_port"] or _free_port(8025)
        receiver_url = f"http://127.0.0.1:{receiver_port}/hooks/demo"
        demo_file = Path(settings.VAR_DIR) / "run" / "demo.json"
        stack.run("demo-setup", [*manage, "demo_setup", "--receiver-url", receiver_url, "--output", str(demo_file)])
        stack.start("receiver", [*manage, "demo_receiver", "--port", str(receiver_port), "--demo-file", str(demo_file)])
        if not _wait_port(receiver_port, 30):
            raise CommandError(f"the demo receiver did not start (see {stack.log_dir / 'receiver.log'})")

        celery = str(BIN / "celery")
        gunicorn = [str(BIN / "gunicorn"), "erc8004.wsgi", "-c", "python:erc8004.gunicorn_conf"]
        stack.start("web", [*gunicorn, "-b", f"127.0.0.1:{opts['port']}", "-w", "2"])
        for queue, pool in (("indexing", "solo"), ("files", "solo"), ("triggers", "solo"), ("actions", "threads")):
            argv = [celery, "-A", "erc8004", "worker", "-Q", queue, "-n", f"{queue}@%h", "-P", pool, "-E"]
            argv += ["-c", "8"] if pool == "threads" else []
            stack.start(f"worker-{queue}", argv)
        stack.start("beat", [celery, "-A", "erc8004", "beat", "-s", str(stack.log_dir / "beat-schedule")])
        # Polls the devnet the moment anvil mines a block (its ws_url is set by devnet_deploy).
        stack.start("head-listener", [*manage, "head_listener"])
        flower_user = env.setdefault("FLOWER_BASIC_AUTH", "admin:erc8004-demo")
        stack.start(
            "flower",
            [celery, "-A", "erc8004", "flower", f"--port={opts['flower_port']}", "--address=127.0.0.1"],
        )
        stack.start(
            "workload",
            [
                *manage,
                "devnet_workload",
                "--rpc-url",
                rpc_url,
                "--seed",
                str(opts["seed"]),
                "--continuous",
                "--rate",
                str(opts["rate"]),
            ],
        )
        _wait_port(opts["port"], 30)
        base = f"http://127.0.0.1:{opts['port']}"
        demo = json.loads(demo_file.read_text())
        flower = f"http://127.0.0.1:{opts['flower_port']}"
        (stack.log_dir / "run.json").write_text(
            json.dumps(
                {
                    "web": base,
                    "flower": flower,
                    "receiver": f"http://127.0.0.1:{receiver_port}",
                    "rpc": rpc_url,
                    "redis": env.get("REDIS_URL", settings.REDIS_URL),
                    "pids": stack.pids(),
                    "supervisor": os.getpid(),
                },
                indent=2,
            )
        )
        lines = [
            "",
            f"  Admin           {base}/admin/   (login {demo['username']} / {demo['password']})",
            f"  Browsable API   {base}/api/v1/",
            f"  Swagger         {base}/api/v1/docs/",
            f"  Health          {base}/api/v1/health",
            f"  Metrics         {base}/metrics",
            f"  Flower          {flower}/   (login {flower_user.replace(':', ' / ', 1)})",
            f"  Demo receiver   {receiver_url}   (what it gets: {stack.log_dir / 'receiver.log'})",
            f"  Triggers        {', '.join(t['name'] for t in demo['triggers'])}",
            f"  Devnet RPC      {rpc_url}   (chain id {settings.DEVNET_CHAIN_ID})",
            f"  Logs            {stack.log_dir}/",
            "",
            "  Ctrl-C stops everything.",
            "",
        ]
        self.stdout.write("\n".join(lines))
        self._receiver = f"http://127.0.0.1:{receiver_port}/"

    def _watch(self, stack: Stack, manage: list[str], opts: dict, started: float) -> None:
        base = f"http://127.0.0.1:{opts['port']}"
        while True:
            failure = stack.check_alive()
            if failure:
                raise CommandError(failure)
            if opts["duration"] and time.monotonic() - started > opts["duration"]:
                return
            if not opts["no_progress"]:
                self.stdout.write("\r" + self._progress(base).ljust(110), ending="")
                self.stdout.flush()
            time.sleep(2)

    def _progress(self, base: str) -> str:
        try:
            with urllib.request.urlopen(f"{base}/api/v1/status/", timeout=2) as response:  # noqa: S310 - loopback
                status = json.loads(response.read())
        except Exception:
            return "waiting for the web server…"
        received = "-"
        with contextlib.suppress(Exception), urllib.request.urlopen(self._receiver, timeout=2) as response:  # noqa: S310
            received = json.loads(response.read())["accepted"]
        chains = status.get("chains", [])
        chain = chains[0] if chains else {}
        return (
            f"head {chain.get('head_block', '-')}  indexed {chain.get('indexed_block', '-')}  "
            f"events {status.get('events', 0)}  agents {status.get('agents', '-')}  "
            f"matches {status.get('matches', '-')}  deliveries {status.get('deliveries', '-')}  "
            f"received {received}"
        )
