"""A real HTTP file server on loopback (allow-listed in tests/settings.py): routes
serve fixed bytes, statuses, redirects, or drip a body one byte at a time."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    drip_seconds: float = 0.0  # pause before each byte: a slow-loris server
    fail_first: int = 0  # answer 503 this many times first
    fail_status: int = 503


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FileServer:
    def __init__(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def route(self, path: str, body: bytes | str = b"", *, status: int = 200, **kwargs: Any) -> str:
        headers = {"Content-Type": "application/json"}
        headers.update(kwargs.pop("headers", {}))
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = Route(body=data, status=status, headers=headers, **kwargs)
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        self.routes[path] = Route(status=status, headers={"Location": location})
        return self.url(path)

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits.count(path)

    def up(self) -> None:
        if self._server is None:
            self._server = _Server(("127.0.0.1", self.port), self._handler())
            threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # no keep-alive: down() really takes the server away

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path
                with server.lock:
                    server.hits.append(path)
                    route = server.routes.get(path)
                    failing = route is not None and route.fail_first > 0
                    if failing:
                        route.fail_first -= 1
                if route is None:
                    self._send(404, b'{"error": "not found"}', {"Content-Type": "application/json"})
                elif failing:
                    self._send(route.fail_status, b"unavailable", {"Content-Type": "text/plain"})
                elif route.drip_seconds:
                    self.send_response(route.status)
                    for k, v in route.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    try:
                        for byte in route.body:
                            time.sleep(route.drip_seconds)
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                    except OSError:
                        pass
                else:
                    self._send(route.status, route.body, route.headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def file_server():
    server = FileServer()
    server.up()
    yield server
    server.down()


@pytest.fixture
def second_file_server():
    server = FileServer()
    server.up()
    yield server
    server.down()
