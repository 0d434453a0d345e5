"""Get the bytes an agent or feedback URI points to: ``data:`` inline, ``http(s)://``,
``ipfs://`` through the configured gateways in order.

Network access goes through ``erc8004.outbound`` and nowhere else — it owns the
safety rules (http(s) only, public addresses only after DNS resolution unless
allow-listed, each redirect hop re-checked, a total time cap a dripping server cannot
stretch, a byte cap). This module adds what is specific to files:

* the URI schemes and the IPFS gateway fallback;
* a content sniff: whatever the Content-Type says, the body must look like a JSON
  object (first non-blank byte ``{``), so an HTML error page served with 200 is an
  error, and a JSON file served as ``text/plain`` or ``application/octet-stream`` (as
  many gateways and static hosts do) is fine;
* the transient/permanent split the retry policy rests on: timeouts, connection
  errors, 5xx, 408 and 429 may succeed later; 4xx, blocked targets, oversized and
  non-JSON bodies will not.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes, urlsplit

from django.conf import settings

from erc8004.outbound import OutboundError, OutboundTooLarge, outbound_request

__all__ = ("FetchedFile", "FileFetchError", "FileUnsupported", "file_fetch", "uri_scheme")

_CID = re.compile(r"^[A-Za-z0-9]{20,128}$")
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_ACCEPT = "application/json, text/plain;q=0.9, */*;q=0.5"


class FileFetchError(Exception):
    """The file could not be fetched. ``retryable``: may the same fetch succeed later?"""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class FileUnsupported(FileFetchError):
    """A URI we do not fetch (empty, ``ar://``, ``file://``, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)


@dataclass(frozen=True)
class FetchedFile:
    content: bytes
    content_type: str
    source_url: str  # the data: marker, the final https URL, or the gateway URL that answered


def uri_scheme(uri: str) -> str:
    """``data``, ``https``, ``http``, ``ipfs`` or ``""`` (unsupported / empty)."""
    value = uri.strip()
    lowered = value[:8].lower()
    if lowered.startswith("data:"):
        return "data"
    if lowered.startswith("https://"):
        return "https"
    if lowered.startswith("http://"):
        return "http"
    if lowered.startswith("ipfs://") or _CID.match(value):
        return "ipfs"
    return ""


def _sniff(content: bytes, content_type: str, where: str) -> None:
    head = content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head != b"{":
        shown = content.lstrip()[:20].decode("utf-8", "replace")
        raise FileFetchError(
            f"{where} is not a JSON object (content-type {content_type or 'none'}, starts with {shown!r})",
            retryable=False,
        )


def _fetch_data(uri: str, *, max_bytes: int) -> FetchedFile:
    """RFC 2397: ``data:[<mediatype>][;base64],<data>``."""
    header, comma, payload = uri.strip()[5:].partition(",")
    if not comma:
        raise FileFetchError("data: URI has no comma before its data", retryable=False)
    params = [p.strip() for p in header.split(";")]
    is_base64 = any(p.lower() == "base64" for p in params[1:])
    media_type = params[0].lower() or "text/plain"
    if is_base64:
        if len(payload) > (max_bytes * 4) // 3 + 4:
            raise FileFetchError(f"data: URI holds more than {max_bytes} bytes", retryable=False)
        compact = re.sub(r"\s+", "", unquote_to_bytes(payload).decode("ascii", "replace"))
        padded = compact + "=" * (-len(compact) % 4)
        try:
            try:
                content = base64.b64decode(padded, validate=True)
            except binascii.Error:  # some writers use the URL-safe alphabet
                content = base64.b64decode(padded, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise FileFetchError("data: URI is not valid base64", retryable=False) from None
    else:
        if len(payload) > max_bytes * 3:
            raise FileFetchError(f"data: URI holds more than {max_bytes} bytes", retryable=False)
        content = unquote_to_bytes(payload)
    if len(content) > max_bytes:
        raise FileFetchError(f"data: URI holds {len(content)} bytes; the limit is {max_bytes}", retryable=False)
    _sniff(content, media_type, "data: URI")
    return FetchedFile(content=content, content_type=media_type, source_url=f"data:{media_type}")


def _fetch_http(url: str, *, max_bytes: int, timeout: float) -> FetchedFile:
    try:
        response = outbound_request(
            "GET",
            url,
            headers={"Accept": _ACCEPT},
            timeout=timeout,
            max_bytes=max_bytes,
            follow_redirects=True,
        )
    except OutboundTooLarge:
        raise FileFetchError(f"file is larger than {max_bytes} bytes", retryable=False) from None
    except OutboundError as exc:
        raise FileFetchError(str(exc), retryable=exc.retryable) from None
    host = urlsplit(response.url).hostname or "?"
    if response.status_code != 200:
        retryable = response.status_code in _TRANSIENT_STATUSES
        raise FileFetchError(f"{host} answered HTTP {response.status_code}", retryable=retryable)
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    _sniff(response.content, content_type, f"the file at {host}")
    return FetchedFile(content=response.content, content_type=content_type, source_url=response.url)


def _ipfs_path(uri: str) -> str:
    """``ipfs://CID/path`` (also ``ipfs://ipfs/CID/...`` and a bare CID) → ``CID/path``."""
    value = uri.strip()
    if value[:7].lower() == "ipfs://":
        value = value[7:]
    if value.lower().startswith("ipfs/"):
        value = value[5:]
    value = value.split("?", 1)[0].split("#", 1)[0]
    cid, _, rest = value.partition("/")
    if not _CID.match(cid):
        raise FileFetchError(f"{cid[:60]!r} is not an IPFS CID", retryable=False)
    segments = [s for s in rest.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise FileFetchError("IPFS path may not contain . or ..", retryable=False)
    return "/".join([cid, *(quote(unquote_to_bytes(s), safe="") for s in segments)])


def _fetch_ipfs(uri: str, *, max_bytes: int, timeout: float, gateways: list[str]) -> FetchedFile:
    """Try each gateway in order; the first good answer wins. The failure is retryable
    if any gateway failed transiently (another try may reach one that has the file)."""
    path = _ipfs_path(uri)
    if not gateways:
        raise FileUnsupported("no IPFS gateway is configured (IPFS_GATEWAYS)")
    failures: list[str] = []
    retryable = False
    for gateway in gateways:
        url = f"{gateway.rstrip('/')}/ipfs/{path}"
        try:
            return _fetch_http(url, max_bytes=max_bytes, timeout=timeout)
        except FileFetchError as exc:
            # Any failure moves on: a gateway may time out, lack the block, or answer
            # with its own HTML page (rate limit, captcha) where another serves the file.
            failures.append(exc.reason)
            retryable = retryable or exc.retryable
    raise FileFetchError("every IPFS gateway failed: " + "; ".join(failures), retryable=retryable)


def file_fetch(
    uri: str,
    *,
    max_bytes: int | None = None,
    timeout: float | None = None,
    gateways: list[str] | None = None,
) -> FetchedFile:
    """Fetch the bytes ``uri`` points to, or raise :class:`FileFetchError`
    (:class:`FileUnsupported` for URIs we do not fetch). Limits default to the
    ``FILE_FETCH_*`` settings; ``gateways`` to ``IPFS_GATEWAYS``."""
    max_bytes = max_bytes if max_bytes is not None else settings.FILE_FETCH_MAX_BYTES
    timeout = timeout if timeout is not None else settings.FILE_FETCH_TIMEOUT
    scheme = uri_scheme(uri)
    if not uri.strip():
        raise FileUnsupported("no URI is set")
    if scheme == "data":
        return _fetch_data(uri, max_bytes=max_bytes)
    if scheme in ("http", "https"):
        return _fetch_http(uri.strip(), max_bytes=max_bytes, timeout=timeout)
    if scheme == "ipfs":
        return _fetch_ipfs(uri, max_bytes=max_bytes, timeout=timeout, gateways=list(gateways or settings.IPFS_GATEWAYS))
    shown = uri.strip().split(":", 1)[0][:20]
    raise FileUnsupported(f"URI scheme {shown!r} is not fetched (data:, https://, http:// and ipfs:// are)")
