"""``manage.py demo_receiver``: the webhook receiver of ``make run``'s demo — a small
HTTP server on loopback that does what a real receiver should, so the demo shows
the whole contract:

* verifies the Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature``: HMAC-SHA256 over ``id.timestamp.body``, timestamp within
  5 minutes) with the secret ``demo_setup`` wrote to the demo file, re-read when a
  signature does not verify (the key may have been rotated from the admin);
* deduplicates on ``webhook-id`` (a retry of a delivery it already accepted is
  answered 200 and counted as a duplicate, not processed again);
* logs one line per delivery and appends it to ``received.jsonl``; ``GET /``
  returns the counts (the ``make run`` test waits on it).

It imports no app: it is a client of the project, not part of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

TOLERANCE_SECONDS = 300


class DemoReceiver:
    """State shared by the handler threads: secrets, seen ids, counters."""

    def __init__(self, *, secret_file: Path, secret: str, log_file: Path) -> None:
        self.secret_file = secret_file
        self.fixed_secret = secret
        self.log_file = log_file
        self.lock = threading.Lock()
        self.seen: set[str] = set()
        self.counts = {"received": 0, "accepted": 0, "duplicates": 0, "rejected": 0}
        self.secrets = self._load_secrets()

    def _load_secrets(self) -> list[str]:
        if self.fixed_secret:
            return [self.fixed_secret]
        try:
            return [json.loads(self.secret_file.read_text())["webhook_secret"]]
        except (OSError, ValueError, KeyError):
            return []

    def verify(self, webhook_id: str, timestamp: str, header: str, body: bytes) -> bool:
        try:
            if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
                return False
        except ValueError:
            return False
        for attempt in range(2):
            for secret in self.secrets:
                key = base64.b64decode(secret.removeprefix("whsec_"))
                expected = base64.b64encode(
                    hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
                ).decode()
                for candidate in header.split():
                    version, _, signature = candidate.partition(",")
                    if version == "v1" and hmac.compare_digest(signature, expected):
                        return True
            if attempt == 0:
                self.secrets = self._load_secrets()  # rotated since we started?
        return False

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock, self.log_file.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")


def _summary(body: dict[str, Any]) -> str:
    """One readable line about what arrived."""
    event = body.get("event") or {}
    args = event.get("args") or {}
    parts = [body.get("type", "?"), event.get("type", "")]
    if event.get("agent_id") is not None:
        parts.append(f"agent {event.get('chain_id', '')}:{event['agent_id']}")
    if "valueNormalized" in args:
        parts.append(f"value {args['valueNormalized']}")
    if body.get("trigger"):
        parts.append(f"trigger {body['trigger'].get('name', body['trigger'].get('id'))!r}")
    return " ".join(str(p) for p in parts if p)


def _handler(receiver: DemoReceiver, write) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # one line per delivery is written below instead
            pass

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with receiver.lock:
                self._reply(200, dict(receiver.counts))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            webhook_id = self.headers.get("webhook-id", "")
            verified = receiver.verify(
                webhook_id, self.headers.get("webhook-timestamp", ""), self.headers.get("webhook-signature", ""), body
            )
            with receiver.lock:
                receiver.counts["received"] += 1
                duplicate = verified and webhook_id in receiver.seen
                if not verified:
                    receiver.counts["rejected"] += 1
                elif duplicate:
                    receiver.counts["duplicates"] += 1
                else:
                    receiver.seen.add(webhook_id)
                    receiver.counts["accepted"] += 1
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = {}
            outcome = "REJECTED (bad signature)" if not verified else "duplicate" if duplicate else "ok"
            write(f"{outcome:<8} {webhook_id}  {_summary(parsed) if isinstance(parsed, dict) else ''}")
            receiver.record(
                {
                    "at": time.time(),
                    "webhook_id": webhook_id,
                    "verified": verified,
                    "duplicate": duplicate,
                    "body": parsed,
                }
            )
            self._reply(200 if verified else 401, {"accepted": verified and not duplicate})

        do_PUT = do_PATCH = do_POST

    return Handler


class Command(BaseCommand):
    help = "Run the demo webhook receiver (verifies Standard Webhooks signatures, dedupes on webhook-id)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--secret", default="", help="whsec_… signing secret (default: read from the demo file)")
        parser.add_argument("--demo-file", default="", help="Default: <ERC8004_VAR_DIR>/run/demo.json")
        parser.add_argument("--log-file", default="", help="Default: <ERC8004_VAR_DIR>/run/received.jsonl")

    def handle(self, *args, **opts) -> None:
        run_dir = Path(settings.VAR_DIR) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        receiver = DemoReceiver(
            secret_file=Path(opts["demo_file"] or run_dir / "demo.json"),
            secret=opts["secret"],
            log_file=Path(opts["log_file"] or run_dir / "received.jsonl"),
        )

        def write(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        server = ThreadingHTTPServer((opts["host"], opts["port"]), _handler(receiver, write))
        server.daemon_threads = True
        # shutdown() waits for serve_forever() to return, so it runs on another thread.
        stop = lambda *_: threading.Thread(target=server.shutdown, daemon=True).start()  # noqa: E731
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        write(f"demo receiver listening on http://{opts['host']}:{opts['port']}/ (Standard Webhooks, dedup on id)")
        server.serve_forever(poll_interval=0.2)
        server.server_close()
        write(f"demo receiver stopped: {receiver.counts}")
