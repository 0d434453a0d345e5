"""Safe outbound HTTP: the one way this project talks to addresses users typed in.

Webhooks, Telegram, MCP servers and (later) registration-file fetches all point at
URLs chosen by users or by on-chain data, so every request goes through here and
gets the same guard rails:

* **http(s) only.** Anything else is ``OutboundInvalidURL``.
* **Public addresses only.** The host is resolved and *every* address it resolves
  to must be public: private (RFC 1918), loopback, link-local (incl. the cloud
  metadata address 169.254.169.254), multicast, reserved, unspecified, CGNAT
  (100.64.0.0/10), benchmarking/documentation ranges, IPv4-mapped IPv6 and IPv6
  prefixes that embed a private IPv4 (6to4, Teredo, NAT64) are refused with
  ``OutboundBlocked``. ``settings.OUTBOUND_ALLOWLIST`` lifts the rule for listed
  CIDRs or exact host names (the test suite allows 127.0.0.0/8 because every
  receiver in it is a loopback server).
* **No DNS-rebinding window.** The check is not only done before the request: the
  connection itself is opened by a guarded network backend that resolves, checks
  and then connects to the *checked IP literal*. The URL keeps its host name, so
  the ``Host`` header, SNI and certificate verification are still done for the
  name. Pooled keep-alive connections are only ever connections to checked IPs.
* **Redirects off by default.** A 3xx is returned to the caller as is. With
  ``follow_redirects=True`` at most ``MAX_REDIRECTS`` hops are followed and each
  hop is checked like the first one (scheme and addresses), and credentials are
  dropped when the origin changes.
* **Bounded.** ``max_bytes`` caps the body (streamed; reading stops there — either
  ``OutboundTooLarge`` or, with ``truncate=True``, a truncated body), and
  ``timeout`` is a *total* time cap: every socket operation gets only what is left
  of it, so a server dripping one byte at a time cannot hold a worker.

Errors are typed and carry ``retryable``: a timeout or refused connection may
succeed later, a blocked address or a malformed URL never will. Messages name the
host but never the path or query, because some URLs carry credentials (the
Telegram bot token lives in the path).

* **Bounded name resolution.** ``getaddrinfo`` cannot be interrupted, so it runs on
  a small pool of resolver threads and the caller waits at most
  ``OUTBOUND_DNS_TIMEOUT`` (and never past the request's total cap): a resolver
  that drops queries (5 s per retry on a stock ``resolv.conf``) or an attacker's
  name server that never answers cannot hold a worker. The stuck lookup finishes
  in its own thread, which is all it can still cost.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio
import anyio.to_thread
import httpcore2
import httpx2
from django.conf import settings

__all__ = (
    "MAX_REDIRECTS",
    "USER_AGENT",
    "OutboundBlocked",
    "OutboundConnectionError",
    "OutboundError",
    "OutboundInvalidURL",
    "OutboundResponse",
    "OutboundTimeout",
    "OutboundTooLarge",
    "OutboundTooManyRedirects",
    "address_is_allowed",
    "guarded_async_transport",
    "outbound_check_url",
    "outbound_request",
    "outbound_validate_url",
    "resolve_checked",
)

# Three hops covers http→https plus a moved endpoint; more is a loop or an attack.
MAX_REDIRECTS = 3
USER_AGENT = "erc8004/1.0 (+https://eips.ethereum.org/EIPS/eip-8004)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundError(Exception):
    """Base class. ``retryable``: can the same request succeed later?"""

    retryable = True


class OutboundInvalidURL(OutboundError):
    """Not an http(s) URL with a host."""

    retryable = False


class OutboundBlocked(OutboundError):
    """The target is (or resolves to) an address we refuse to reach."""

    retryable = False


class OutboundTooLarge(OutboundError):
    """The response body is larger than the caller's cap."""

    retryable = False


class OutboundTooManyRedirects(OutboundError):
    retryable = False


class OutboundTimeout(OutboundError):
    """The total time cap ran out (connect, send, wait or read)."""


class OutboundConnectionError(OutboundError):
    """DNS failure, refused or reset connection, TLS failure, broken HTTP."""


@dataclass(frozen=True)
class OutboundResponse:
    status_code: int
    headers: Mapping[str, str]  # lower-cased names
    content: bytes
    url: str  # final URL (after redirects, if followed)
    truncated: bool = False
    elapsed_ms: int = 0
    redirects: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


#
# Address policy
#

# Ranges Python's ``is_global`` lets through (or that we refuse explicitly for clarity).
_ALWAYS_BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10",  # CGNAT (RFC 6598): the provider's side of the NAT
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved
        "ff00::/8",  # IPv6 multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@functools.lru_cache(maxsize=8)
def _parse_allowlist(entries: tuple[str, ...]) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    networks: list[IPNetwork] = []
    names: set[str] = set()
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(_normalize_host(entry))
    return tuple(networks), frozenset(names)


def _allowlist() -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    return _parse_allowlist(tuple(getattr(settings, "OUTBOUND_ALLOWLIST", ()) or ()))


def _normalize_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _is_public(ip: IPAddress) -> bool:
    if any(ip in net for net in _ALWAYS_BLOCKED if net.version == ip.version):
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return False  # ::ffff:a.b.c.d reaches the IPv4 host; refuse the disguise outright
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not _is_public(embedded):
            return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    )


def address_is_allowed(ip: str | IPAddress) -> bool:
    """Public, or inside an allow-listed network."""
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    if _is_public(addr):
        return True
    networks, _ = _allowlist()
    return any(addr in net for net in networks if net.version == addr.version)


_resolver: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
_resolver_lock = threading.Lock()
RESOLVER_THREADS = 8


def _resolver_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The process's resolver threads, created after a fork (prefork workers)."""
    global _resolver
    with _resolver_lock:
        if _resolver is None or _resolver[0] != os.getpid():
            pool = concurrent.futures.ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="outbound-dns")
            _resolver = (os.getpid(), pool)
        return _resolver[1]


def _getaddrinfo_bounded(name: str, port: int) -> list[Any]:
    """``getaddrinfo`` with a time limit: OUTBOUND_DNS_TIMEOUT, or what is left of the
    current request's total cap if that is less."""
    limit = settings.OUTBOUND_DNS_TIMEOUT
    deadline = _DEADLINE.get()
    if deadline is not None:
        limit = min(limit, max(0.0, deadline - time.monotonic()))
    future = _resolver_pool().submit(socket.getaddrinfo, name, port, type=socket.SOCK_STREAM)
    try:
        return future.result(timeout=limit)
    except concurrent.futures.TimeoutError:
        future.cancel()  # if it never started (every resolver thread busy), it never will
        raise OutboundTimeout(f"cannot resolve {name}: no answer within {limit:g}s") from None


def resolve_checked(host: str, port: int) -> list[str]:
    """Resolve ``host`` and return its addresses, all checked; raise
    ``OutboundBlocked`` if any of them is refused (a name with one public and one
    private record is refused: the resolver, not us, would pick which one is used).
    """
    name = _normalize_host(host)
    if not name:
        raise OutboundInvalidURL("URL has no host")
    _, allowed_names = _allowlist()
    try:
        literal: IPAddress | None = ipaddress.ip_address(name)
    except ValueError:
        literal = None
    if literal is not None:
        if name not in allowed_names and not address_is_allowed(literal):
            raise OutboundBlocked(f"{literal} is not a public address")
        return [str(literal)]
    try:
        infos = _getaddrinfo_bounded(name, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise OutboundConnectionError(f"cannot resolve {name}: {exc}") from None
    addresses: list[str] = []
    for info in infos:
        ip = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise OutboundConnectionError(f"cannot resolve {name}: no addresses")
    if name not in allowed_names:
        for ip in addresses:
            if not address_is_allowed(ip):
                raise OutboundBlocked(f"{name} resolves to {ip}, which is not a public address")
    return addresses


def _split_checked(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundInvalidURL(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundInvalidURL(f"only http and https URLs are allowed, not {scheme or 'no scheme'!r}")
    host = parts.hostname or ""
    if not host:
        raise OutboundInvalidURL("URL has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


# The IPv4 spellings inet_aton (and so getaddrinfo) accepts besides dotted quads:
# "127.1", "2130706433", "0x7f000001", "0177.0.0.1". ipaddress does not parse them.
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE)


def _ip_literal(name: str) -> IPAddress | None:
    """The address ``name`` spells, in any notation the system resolver would take
    as an address rather than a name; None for a name."""
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(name):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return None
    return None


def outbound_validate_url(url: str) -> None:
    """Form check for a URL a user is saving: http(s), a host, and not a literal
    refused address (in any spelling: ``http://2130706433/`` is 127.0.0.1). No DNS
    lookup (a name may legitimately not resolve yet; it is checked every time a
    connection is made)."""
    _, host, _ = _split_checked(url)
    name = _normalize_host(host)
    literal = _ip_literal(name)
    if literal is None:
        return
    if name not in _allowlist()[1] and not address_is_allowed(literal):
        raise OutboundBlocked(f"{literal} is not a public address")


def outbound_check_url(url: str) -> list[str]:
    """Validate scheme and host and resolve-and-check the host; returns its addresses.

    Used before handing a URL to code that does its own HTTP (the MCP SDK) for a
    clear early error; the guarded transports check again at connect time."""
    _, host, port = _split_checked(url)
    return resolve_checked(host, port)


#
# The deadline: every socket operation gets at most what is left of the total cap.
#

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("outbound_deadline", default=None)


def _clamp(timeout: float | None) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise httpcore2.ReadTimeout("total time cap reached")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore2.NetworkStream):
    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _clamp(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _clamp(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _clamp(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedSyncBackend(httpcore2.SyncBackend):
    """Resolve, check, then connect to the checked IP literal (never re-resolved)."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        last: Exception | None = None
        for ip in resolve_checked(host, port):
            try:
                stream = super().connect_tcp(
                    ip, port, timeout=_clamp(timeout), local_address=local_address, socket_options=socket_options
                )
            except httpcore2.ConnectError as exc:
                last = exc
                continue
            return _DeadlineStream(stream)
        assert last is not None
        raise last


class _GuardedAsyncBackend(httpcore2.AnyIOBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        last: Exception | None = None
        for ip in await anyio.to_thread.run_sync(resolve_checked, host, port):
            try:
                return await super().connect_tcp(
                    ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except httpcore2.ConnectError as exc:
                last = exc
        assert last is not None
        raise last


@functools.lru_cache(maxsize=4)
def _ssl_context(cafile: str | None) -> ssl.SSLContext:
    # One context per process: building it loads the CA store (milliseconds each).
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    return httpcore2.default_ssl_context(_trust_env=False)


def _current_ssl_context() -> ssl.SSLContext:
    return _ssl_context(getattr(settings, "OUTBOUND_CA_FILE", None) or None)


class _GuardedTransport(httpx2.HTTPTransport):
    """httpx2's transport with its connection pool swapped for one on the guarded
    backend (httpx2 does not expose ``network_backend``; the pool is the seam)."""

    def __init__(self) -> None:
        context = _current_ssl_context()
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=context,
            max_connections=20,
            max_keepalive_connections=10,
            keepalive_expiry=30.0,
            network_backend=_GuardedSyncBackend(),
        )


class _GuardedAsyncTransport(httpx2.AsyncHTTPTransport):
    def __init__(self) -> None:
        context = _current_ssl_context()
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=context,
            max_connections=10,
            keepalive_expiry=30.0,
            network_backend=_GuardedAsyncBackend(),
        )


def guarded_async_transport() -> httpx2.AsyncHTTPTransport:
    """An httpx2 async transport that applies the address policy at connect time,
    for libraries that make their own requests (the MCP SDK accepts an
    ``httpx2.AsyncClient``). Redirect and size policies stay the library's."""
    return _GuardedAsyncTransport()


_local = threading.local()


def _client() -> httpx2.Client:
    # One client (and keep-alive pool) per thread: Celery's thread pool runs many
    # sends at once and a per-thread pool needs no cross-thread locking. Keyed by the
    # CA setting, which is baked into the pool's TLS context.
    clients: dict[str | None, httpx2.Client] = _local.__dict__.setdefault("clients", {})
    cafile = getattr(settings, "OUTBOUND_CA_FILE", None) or None
    client = clients.get(cafile)
    if client is None:
        client = httpx2.Client(transport=_GuardedTransport(), follow_redirects=False, trust_env=False)
        clients[cafile] = client
    return client


_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def outbound_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    timeout: float = 10.0,
    max_bytes: int = 1_048_576,
    follow_redirects: bool = False,
    truncate: bool = False,
) -> OutboundResponse:
    """Send one request under the rules in the module docstring.

    ``timeout`` is the total time in seconds for everything (all hops included);
    ``max_bytes`` caps the body read. Raises an ``OutboundError`` subclass; any HTTP
    status (including 4xx/5xx and an unfollowed 3xx) is a normal response.
    """
    started = time.monotonic()
    deadline = started + timeout
    token = _DEADLINE.set(deadline)
    method = method.upper()
    send_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    content = body.encode() if isinstance(body, str) else body
    hops: list[str] = []
    try:
        while True:
            scheme, host, port = _split_checked(url)
            resolve_checked(host, port)  # early, clear error; the backend checks again when it connects
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OutboundTimeout(f"{host}: total time cap of {timeout:g}s reached")
            with _client().stream(
                method, url, headers=send_headers, content=content, timeout=httpx2.Timeout(remaining)
            ) as response:
                location = response.headers.get("location")
                if follow_redirects and response.status_code in _REDIRECT_CODES and location:
                    if len(hops) >= MAX_REDIRECTS:
                        raise OutboundTooManyRedirects(f"{host}: more than {MAX_REDIRECTS} redirects")
                    next_url = urljoin(url, location)
                    hops.append(next_url)
                    if _origin(next_url) != (scheme, host, port):
                        send_headers = {k: v for k, v in send_headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
                    if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                        method, content = "GET", None
                        send_headers = {k: v for k, v in send_headers.items() if k.lower() != "content-type"}
                    url = next_url
                    continue
                data, truncated = _read_capped(response, max_bytes=max_bytes, truncate=truncate, host=host)
                return OutboundResponse(
                    status_code=response.status_code,
                    headers={k.lower(): v for k, v in response.headers.items()},
                    content=data,
                    url=url,
                    truncated=truncated,
                    elapsed_ms=int((time.monotonic() - started) * 1000),
                    redirects=tuple(hops),
                )
    except httpx2.TimeoutException:
        raise OutboundTimeout(f"{_host_of(url)}: timed out (total cap {timeout:g}s)") from None
    except (httpx2.InvalidURL, httpx2.UnsupportedProtocol) as exc:
        raise OutboundInvalidURL(f"invalid URL: {exc}") from None
    except httpx2.TransportError as exc:
        raise OutboundConnectionError(f"{_host_of(url)}: {type(exc).__name__}: {exc}") from None
    finally:
        _DEADLINE.reset(token)


def _read_capped(response: httpx2.Response, *, max_bytes: int, truncate: bool, host: str) -> tuple[bytes, bool]:
    declared = response.headers.get("content-length")
    if not truncate and declared and declared.isdigit() and int(declared) > max_bytes:
        raise OutboundTooLarge(f"{host}: response of {declared} bytes exceeds the {max_bytes}-byte cap")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            if not truncate:
                raise OutboundTooLarge(f"{host}: response exceeds the {max_bytes}-byte cap")
            return b"".join(chunks)[:max_bytes], True
    return b"".join(chunks), False


def _origin(url: str) -> tuple[str, str, int]:
    try:
        return _split_checked(url)
    except OutboundError:
        return ("", "", 0)


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"
