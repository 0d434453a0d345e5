"""erc8004/outbound.py against real loopback servers (allow-listed by the test
settings) and targets it must refuse without ever connecting."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.test import override_settings

from erc8004.outbound import (
    OutboundBlocked,
    OutboundConnectionError,
    OutboundInvalidURL,
    OutboundTimeout,
    OutboundTooLarge,
    OutboundTooManyRedirects,
    address_is_allowed,
    outbound_check_url,
    outbound_request,
    outbound_validate_url,
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/big":
            self._send(200, b"x" * 10_000)
        elif self.path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b".")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                pass
        elif self.path.startswith("/redirect-to/"):
            self._send(302, headers={"Location": self.path.removeprefix("/redirect-to/")})
        elif self.path.startswith("/loop/"):
            n = int(self.path.rsplit("/", 1)[1])
            self._send(307, headers={"Location": f"/loop/{n + 1}"})
        elif self.path == "/echo-host":
            self._send(200, (self.headers.get("Host") or "").encode())
        else:
            self._send(200, b"hello")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.hits.append(f"POST {self.path}")  # type: ignore[attr-defined]
        if self.path == "/see-other":
            self._send(303, headers={"Location": "/after"})
        else:
            self._send(201, body, {"X-Auth-Seen": self.headers.get("Authorization", "")})


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up early (caps, timeouts) are the point of these tests


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server: ThreadingHTTPServer, path: str = "/", host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.server_address[1]}{path}"


def test_get_and_post_reach_an_allowlisted_loopback_server(server):
    response = outbound_request("GET", _url(server, "/echo-host", host="localhost"))
    assert response.status_code == 200
    assert response.content == f"localhost:{server.server_address[1]}".encode()  # Host keeps the name

    response = outbound_request(
        "POST", _url(server, "/p"), body='{"a":1}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201
    assert response.json() == {"a": 1}
    assert response.headers["content-length"] == "7"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.5.5/",
        "http://100.64.0.1/",  # CGNAT
        "http://0.0.0.0/",
        "http://224.0.0.1/",  # multicast
        "http://240.0.0.1/",  # reserved
        "http://[fe80::1]/",  # link-local
        "http://[fc00::1]/",  # unique local
        "http://[::]/",
        "http://[2002:a00:1::]/",  # 6to4 wrapping 10.0.0.1
        "http://[64:ff9b::a00:1]/",  # NAT64 wrapping 10.0.0.1
    ],
)
def test_private_and_special_targets_are_refused(url):
    with pytest.raises(OutboundBlocked):
        outbound_request("GET", url, timeout=2)


def test_ipv4_mapped_ipv6_is_refused_even_when_the_ipv4_is_allowlisted(server):
    with pytest.raises(OutboundBlocked):
        outbound_request("GET", f"http://[::ffff:127.0.0.1]:{server.server_address[1]}/")
    assert server.hits == []


def test_loopback_is_refused_when_not_allowlisted(server):
    with override_settings(OUTBOUND_ALLOWLIST=[]):
        for host in ("127.0.0.1", "localhost", "2130706433", "127.1"):  # names and odd IPv4 spellings
            with pytest.raises(OutboundBlocked):
                outbound_request("GET", _url(server, host=host))
    assert server.hits == []


def test_odd_ipv4_spellings_are_refused_when_saved():
    """Decimal, hex, octal and short forms were saved as if they were host names
    (refused only when connecting); a saved destination is now refused up front."""
    with override_settings(OUTBOUND_ALLOWLIST=[]):
        for host in ("2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.1", "167772161"):
            with pytest.raises(OutboundBlocked):
                outbound_validate_url(f"http://{host}:8080/x")
    for host in ("cafe", "1.example", "deadbeef.test", "8.8.8.8", "134744072"):  # names, and public addresses
        outbound_validate_url(f"http://{host}/")


def test_allowlist_by_exact_host_name(server):
    with override_settings(OUTBOUND_ALLOWLIST=["localhost"]):
        assert outbound_request("GET", _url(server, host="localhost")).status_code == 200
        with pytest.raises(OutboundBlocked):
            outbound_request("GET", _url(server, host="127.0.0.1"))


def test_public_addresses_are_allowed():
    assert address_is_allowed("93.184.216.34")
    assert address_is_allowed("2606:4700::1111")
    assert address_is_allowed("127.0.0.2")  # allow-listed by the test settings
    with override_settings(OUTBOUND_ALLOWLIST=[]):
        assert not address_is_allowed("127.0.0.2")


def test_only_http_and_https(server):
    for url in ("ftp://example.com/", "file:///etc/passwd", "gopher://x/", "//example.com/", "http:///nohost"):
        with pytest.raises(OutboundInvalidURL):
            outbound_request("GET", url)
    with pytest.raises(OutboundInvalidURL):
        outbound_validate_url("javascript:alert(1)")
    with pytest.raises(OutboundBlocked):
        outbound_validate_url("https://169.254.169.254/")
    outbound_validate_url("https://does-not-need-to-resolve.invalid/x")  # names are checked at connect time


def test_dns_rebinding_is_checked_at_connect_time(server, monkeypatch):
    """The pre-flight lookup says public, the connect-time lookup says loopback: the
    connection is refused, because the backend connects only to what it checked."""
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34", "127.0.0.1", "127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with override_settings(OUTBOUND_ALLOWLIST=[]), pytest.raises(OutboundBlocked, match=r"127\.0\.0\.1"):
        outbound_request("GET", f"http://rebind.test:{server.server_address[1]}/")
    assert server.hits == []


def test_a_name_with_one_private_record_is_refused(monkeypatch):
    real = socket.getaddrinfo

    def mixed(host, port, *args, **kwargs):
        if host == "mixed.test":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.1.1", port)),
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    with pytest.raises(OutboundBlocked, match=r"10\.1\.1\.1"):
        outbound_check_url("https://mixed.test/")


def test_a_resolver_that_never_answers_costs_at_most_the_dns_timeout(monkeypatch):
    """A name server that drops the query (the system resolver then waits 5 s per
    try) must not hold the worker: the lookup is abandoned after OUTBOUND_DNS_TIMEOUT
    as a retryable timeout, and the request's own total cap bounds it too."""
    real = socket.getaddrinfo
    release = threading.Event()

    def silent(host, port, *args, **kwargs):
        if host == "silent.test":
            release.wait(30)
            raise socket.gaierror("no answer")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", silent)
    try:
        with override_settings(OUTBOUND_DNS_TIMEOUT=0.3), pytest.raises(OutboundTimeout, match=r"silent\.test") as err:
            outbound_check_url("https://silent.test/")
        assert err.value.retryable
        with override_settings(OUTBOUND_DNS_TIMEOUT=30), pytest.raises(OutboundTimeout):
            outbound_request("GET", "https://silent.test/", timeout=0.3)
    finally:
        release.set()


def test_redirects_are_not_followed_by_default(server):
    response = outbound_request("GET", _url(server, "/redirect-to/http://10.0.0.1/"))
    assert response.status_code == 302
    assert response.headers["location"] == "http://10.0.0.1/"


def test_each_redirect_hop_is_checked(server):
    with pytest.raises(OutboundBlocked):
        outbound_request("GET", _url(server, "/redirect-to/http://169.254.169.254/x"), follow_redirects=True)
    response = outbound_request("GET", _url(server, f"/redirect-to/{_url(server, '/fine')}"), follow_redirects=True)
    assert response.status_code == 200
    assert response.redirects == (_url(server, "/fine"),)


def test_at_most_three_redirects(server):
    with pytest.raises(OutboundTooManyRedirects):
        outbound_request("GET", _url(server, "/loop/0"), follow_redirects=True)
    assert server.hits == ["/loop/0", "/loop/1", "/loop/2", "/loop/3"]


def test_303_turns_post_into_get(server):
    response = outbound_request("POST", _url(server, "/see-other"), body="x", follow_redirects=True)
    assert response.status_code == 200
    assert server.hits == ["POST /see-other", "/after"]


def test_credentials_are_dropped_when_a_redirect_changes_origin(server):
    other = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    other.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=other.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        target = f"http://127.0.0.1:{other.server_address[1]}/landing"
        outbound_request(
            "GET",
            _url(server, f"/redirect-to/{target}"),
            headers={"Authorization": "Bearer s3cret"},
            follow_redirects=True,
        )
        assert other.hits == ["/landing"]
    finally:
        other.shutdown()
        other.server_close()


def test_response_size_is_capped(server):
    with pytest.raises(OutboundTooLarge):
        outbound_request("GET", _url(server, "/big"), max_bytes=1000)  # declared length
    with pytest.raises(OutboundTooLarge):
        outbound_request("GET", _url(server, "/big-chunked"), max_bytes=5000)  # streamed
    response = outbound_request("GET", _url(server, "/big-chunked"), max_bytes=5000, truncate=True)
    assert response.truncated
    assert response.content == b"y" * 5000


def test_total_time_cap_stops_a_dripping_server(server):
    started = time.monotonic()
    with pytest.raises(OutboundTimeout):
        outbound_request("GET", _url(server, "/drip"), timeout=0.6)
    assert time.monotonic() - started < 1.5  # not 0.6 s per read: 0.6 s in total


def test_connection_refused_is_retryable():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(OutboundConnectionError) as caught:
        outbound_request("GET", f"http://127.0.0.1:{port}/")
    assert caught.value.retryable
    with pytest.raises(OutboundBlocked) as blocked:
        outbound_request("GET", "http://10.0.0.1/")
    assert not blocked.value.retryable


def test_errors_never_contain_the_path(server):
    """A Telegram URL carries the bot token in its path."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(OutboundConnectionError) as caught:
        outbound_request("POST", f"http://127.0.0.1:{port}/bot123456:SECRET-TOKEN/sendMessage")
    assert "SECRET-TOKEN" not in str(caught.value)


#
# TLS: the connection goes to the checked IP while SNI and certificate checks use the name.
#


def _make_certificate(tmp_path: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "erc8004 test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, cert_path, key_path


def test_tls_is_verified_for_the_name_not_the_pinned_ip(tmp_path):
    ca_path, cert_path, key_path = _make_certificate(tmp_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.hits = []  # type: ignore[attr-defined]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = httpd.server_address[1]
    try:
        with override_settings(OUTBOUND_CA_FILE=str(ca_path)):
            # Connected to 127.0.0.1 (checked), certificate verified for "localhost".
            assert (
                outbound_request("GET", f"https://localhost:{port}/echo-host").content == f"localhost:{port}".encode()
            )
            # The same server by IP: the certificate does not name 127.0.0.1 → refused.
            with pytest.raises(OutboundConnectionError):
                outbound_request("GET", f"https://127.0.0.1:{port}/")
        # Without the test CA the certificate is not trusted at all.
        with pytest.raises(OutboundConnectionError):
            outbound_request("GET", f"https://localhost:{port}/")
    finally:
        httpd.shutdown()
        httpd.server_close()
