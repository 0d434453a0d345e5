"""A real loopback HTTP server that serves everything a registration or feedback file
must never be allowed to do to us, and a canary that only counts who reached it.

``HostileFileServer`` answers ``/<kind>/<anything>`` with the behaviour named by
``kind`` (``KINDS``: what each one does and the words the file row's error must
contain). Threads only; ``close()`` releases the handlers that hold a connection
open (slow-loris, silent) and stops the server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ("FEEDBACK_KINDS", "KINDS", "HostileFileServer", "registration_document")

# kind → the words the stored error must contain (checked case-insensitively).
KINDS: dict[str, str] = {
    "oversized": "larger than",  # a declared Content-Length beyond FILE_FETCH_MAX_BYTES
    "oversized-chunked": "larger than",  # the same without a length: the cap is counted while streaming
    "deep-object": "nested more than",
    "deep-array": "nested more than",
    "bad-utf8": "not valid utf-8",
    "huge-int": "not valid json",
    "nan": "not valid json",
    "html": "not a json object",
    "top-array": "not a json object",
    "wrong-name": "name must be a string",
    "wrong-active": "active must be true or false",
    "wrong-services": "services must be an array",
    "wrong-service-item": "services[0]",
    "wrong-trust": "supportedtrust must be an array",
    "wrong-registrations": "registrations must be an array",
    "slow-loris": "time",  # one byte every 100 ms, forever: the total time cap ends it
    "silent": "time",  # accepts, reads the request, never answers
    "redirect-loop": "redirect",
    "status-500": "http 500",
}
# Feedback files are parsed by their own schema (agents/feedback_files.py).
FEEDBACK_KINDS: dict[str, str] = {
    "oversized": "larger than",
    "deep-object": "nested more than",
    "bad-utf8": "not valid utf-8",
    "html": "not a json object",
    "wrong-text": "text must be a string",
    "wrong-mcp": "mcp must be an object",
    "slow-loris": "time",
    "silent": "time",
}

_BASE = {"type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1", "name": "hostile"}
_WRONG: dict[str, dict[str, Any]] = {
    "wrong-name": {**_BASE, "name": 123},
    "wrong-active": {**_BASE, "active": "yes"},
    "wrong-services": {**_BASE, "services": {"mcp": "https://x"}},
    "wrong-service-item": {**_BASE, "services": [{"name": 5, "endpoint": "x"}]},
    "wrong-trust": {**_BASE, "supportedTrust": "reputation"},
    "wrong-registrations": {**_BASE, "registrations": "eip155:1:0x0"},
    "wrong-text": {"text": 5},
    "wrong-mcp": {"mcp": "tools/call"},
}


def registration_document(name: str) -> dict[str, Any]:
    return {
        **_BASE,
        "name": name,
        "description": "served by the hostile server's honest path",
        "services": [{"name": "web", "endpoint": "https://example.com/"}],
        "active": True,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.lock:
            self.server.hits.append(path)
        parts = [p for p in path.split("/") if p]
        kind = parts[0] if parts else ""
        if kind == "ipfs":
            kind = "ok"
        limit = self.server.max_bytes
        if kind == "ok":
            self._send(
                200, json.dumps(registration_document(f"ok {path}")).encode(), {"Content-Type": "application/json"}
            )
        elif kind == "feedback-ok":
            self._send(200, json.dumps({"text": "fine", "agentId": 1}).encode())
        elif kind == "oversized":
            self._send(200, b'{"name":"' + b"x" * limit + b'"}')
        elif kind == "oversized-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * 65536
            try:
                self.wfile.write(b"%x\r\n{\r\n" % 1)
                for _ in range(limit // len(chunk) + 2):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client stopped reading at its cap: the point
        elif kind == "deep-object":
            self._send(200, b'{"a":' * 5000 + b"1" + b"}" * 5000)
        elif kind == "deep-array":
            self._send(200, b'{"services":' + b"[" * 200_000 + b"]" * 200_000 + b"}")
        elif kind == "bad-utf8":
            self._send(200, b'{"name": "\xff\xfe\xfd broken"}')
        elif kind == "huge-int":
            self._send(200, b'{"name": "x", "n": ' + b"9" * 5000 + b"}")
        elif kind == "nan":
            self._send(200, b'{"name": NaN}')
        elif kind == "html":
            self._send(200, b"<!doctype html><html><body>Rate limited</body></html>", {"Content-Type": "text/html"})
        elif kind == "top-array":
            self._send(200, b"[1, 2, 3]")
        elif kind in _WRONG:
            self._send(200, json.dumps(_WRONG[kind]).encode())
        elif kind == "slow-loris":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                self.wfile.write(b"{")
                while not self.server.stopping.wait(0.1):
                    self.wfile.write(b" ")
                    self.wfile.flush()
            except OSError:
                pass
        elif kind == "silent":
            self.server.stopping.wait(120)
        elif kind == "redirect-loop":
            self._send(302, b"", {"Location": path})
        elif kind == "status-500":
            self._send(500, b"oops")
        elif kind == "redirect-to":
            # /redirect-to/<url-quoted target>: a 302 to anywhere (SSRF scenario)
            from urllib.parse import unquote

            self._send(302, b"", {"Location": unquote(path.split("/redirect-to/", 1)[1])})
        else:
            self._send(404, b"no such kind")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with self.server.lock:
            self.server.hits.append(f"POST {self.path}")
        if "/redirect-to/" in self.path:
            from urllib.parse import unquote

            self._send(302, b"", {"Location": unquote(self.path.split("/redirect-to/", 1)[1])})
        else:
            self._send(200, b"{}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hits: list[str]
    lock: threading.Lock
    stopping: threading.Event
    max_bytes: int

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up (caps, timeouts) are the point


class _Server6(_Server):
    address_family = socket.AF_INET6


class HostileFileServer:
    """Start on a free loopback port; ``url(kind, suffix)``; ``hits`` lists every path
    requested (a canary is simply a server whose hits must stay empty)."""

    def __init__(self, *, max_bytes: int = 1024 * 1024, host: str = "127.0.0.1") -> None:
        server_class = _Server6 if ":" in host else _Server
        self._httpd = server_class((host, 0), _Handler)
        self._httpd.hits = []
        self._httpd.lock = threading.Lock()
        self._httpd.stopping = threading.Event()
        self._httpd.max_bytes = max_bytes
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def hits(self) -> list[str]:
        with self._httpd.lock:
            return list(self._httpd.hits)

    def url(self, kind: str, suffix: str = "") -> str:
        return f"{self.base_url}/{kind}/{suffix}".rstrip("/")

    def close(self) -> None:
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        time.sleep(0)  # let handler threads see the stop flag

    def __enter__(self) -> HostileFileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
