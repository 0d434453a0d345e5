"""``manage.py demo_receiver`` as a process: it verifies Standard Webhooks
signatures (computed here independently of our signing code), dedupes on
``webhook-id`` and stops on SIGTERM."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.fixtures.processes import BASE_DIR, free_port, wait_for

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def post(url: str, body: bytes, webhook_id: str, secret: str = SECRET, timestamp: int | None = None) -> int:
    timestamp = timestamp or int(time.time())
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signature = base64.b64encode(hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 - loopback
    request.add_header("webhook-id", webhook_id)
    request.add_header("webhook-timestamp", str(timestamp))
    request.add_header("webhook-signature", f"v1,{signature.decode()}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_verifies_dedupes_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env = {**os.environ, "ERC8004_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "received.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "demo_receiver", "--port", str(port), "--secret", SECRET, "--log-file", str(log)],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/hooks/demo"
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), 30, what="the demo receiver")
        body = json.dumps({"type": "event.matched", "event": {"type": "NewFeedback", "args": {}}}).encode()
        assert post(url, body, "msg_1") == 200
        assert post(url, body, "msg_1") == 200  # a retry of the same delivery: acknowledged, not processed again
        assert post(url, body, "msg_2", secret="whsec_" + base64.b64encode(b"x" * 32).decode()) == 401
        assert post(url, body, "msg_3", timestamp=int(time.time()) - 3600) == 401  # replayed long after
        counts = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read())
        assert counts == {"received": 4, "accepted": 1, "duplicates": 1, "rejected": 2}
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        assert [(e["webhook_id"], e["verified"], e["duplicate"]) for e in entries] == [
            ("msg_1", True, False),
            ("msg_1", True, True),
            ("msg_2", False, False),
            ("msg_3", False, False),
        ]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert b"demo receiver stopped" in out


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):  # noqa: S310
            return True
    except OSError:
        return False
