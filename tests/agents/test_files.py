"""agents/files.py against real loopback servers: schemes, the IPFS gateway order,
redirects to refused targets, size and time limits, the content sniff, and which
failures count as transient."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import quote

import pytest

from agents.files import FileFetchError, FileUnsupported, file_fetch, uri_scheme

DOC = {"name": "agent", "services": [{"name": "web", "endpoint": "https://example.com"}]}
BODY = json.dumps(DOC).encode()
CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def failure(uri: str, **kwargs) -> FileFetchError:
    with pytest.raises(FileFetchError) as caught:
        file_fetch(uri, **kwargs)
    return caught.value


def test_schemes():
    assert uri_scheme("data:application/json;base64,e30=") == "data"
    assert uri_scheme("HTTPS://x") == "https"
    assert uri_scheme("http://x") == "http"
    assert uri_scheme(f"ipfs://{CID}") == "ipfs"
    assert uri_scheme(CID) == "ipfs"
    assert uri_scheme("ar://abc") == ""


def test_data_uri_base64():
    uri = "data:application/json;base64," + base64.b64encode(BODY).decode()
    fetched = file_fetch(uri)
    assert fetched.content == BODY
    assert fetched.content_type == "application/json"
    assert fetched.source_url == "data:application/json"


def test_data_uri_plain_and_percent_encoded():
    assert file_fetch("data:application/json," + quote(BODY.decode())).content == BODY
    assert file_fetch('data:,{"a":1}').content == b'{"a":1}'
    assert file_fetch("data:application/json;charset=utf-8;base64," + base64.b64encode(BODY).decode()).content == BODY


def test_bad_data_uris():
    assert "not valid base64" in failure("data:application/json;base64,@@@").reason
    assert "no comma" in failure("data:application/json;base64").reason
    assert "not a JSON object" in failure("data:text/html,<html></html>").reason
    big = "data:application/json;base64," + base64.b64encode(b"{" + b" " * 2000 + b"}").decode()
    assert not failure(big, max_bytes=1000).retryable


def test_unsupported_uris():
    for uri in ("", "   ", "ar://abc", "file:///etc/passwd", "ftp://x/y.json"):
        with pytest.raises(FileUnsupported):
            file_fetch(uri)


def test_https_like_fetch_from_an_allowlisted_loopback_server(file_server):
    fetched = file_fetch(file_server.route("/agent.json", BODY))
    assert fetched.content == BODY
    assert fetched.source_url == file_server.url("/agent.json")


def test_json_served_as_text_or_octet_stream_is_fine(file_server):
    uri = file_server.route("/plain", BODY, headers={"Content-Type": "application/octet-stream"})
    assert file_fetch(uri).content_type == "application/octet-stream"


def test_an_html_page_with_200_is_refused_by_the_sniff(file_server):
    uri = file_server.route("/page", "<!doctype html><p>hi", headers={"Content-Type": "text/html"})
    error = failure(uri)
    assert "not a JSON object (content-type text/html" in error.reason
    assert not error.retryable


def test_redirects_are_followed_and_each_hop_checked(file_server):
    file_server.route("/final.json", BODY)
    assert file_fetch(file_server.redirect("/moved", file_server.url("/final.json"))).content == BODY
    for target in (
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/agent.json",
        "http://[::ffff:127.0.0.1]/",
    ):
        error = failure(file_server.redirect("/evil", target))
        assert "not a public address" in error.reason
        assert not error.retryable


def test_status_codes_split_into_transient_and_permanent(file_server):
    assert not failure(file_server.url("/missing")).retryable  # 404
    for status in (500, 502, 503, 504, 429, 408):
        assert failure(file_server.route(f"/s{status}", b"{}", status=status)).retryable, status
    assert not failure(file_server.route("/s403", b"{}", status=403)).retryable


def test_size_limit(file_server):
    uri = file_server.route("/big.json", b"{" + b" " * 5000 + b"}")
    error = failure(uri, max_bytes=4096)
    assert "larger than 4096 bytes" in error.reason
    assert not error.retryable


def test_slow_loris_is_cut_by_the_total_time_cap(file_server):
    uri = file_server.route("/slow.json", BODY, drip_seconds=0.2)
    started = time.monotonic()
    error = failure(uri, timeout=1.0)
    assert time.monotonic() - started < 3
    assert "timed out" in error.reason
    assert error.retryable


def test_connection_refused_is_transient(file_server):
    uri = file_server.url("/agent.json")
    file_server.down()
    assert failure(uri).retryable


def test_ipfs_gateways_are_tried_in_order(file_server, second_file_server):
    first, second = file_server, second_file_server
    first.route(f"/ipfs/{CID}", b'{"from": "first"}')
    second.route(f"/ipfs/{CID}", b'{"from": "second"}')
    gateways = [first.base_url, second.base_url]
    assert file_fetch(f"ipfs://{CID}", gateways=gateways).content == b'{"from": "first"}'
    # First gateway down: the second answers.
    first.down()
    fetched = file_fetch(f"ipfs://{CID}", gateways=gateways)
    assert fetched.content == b'{"from": "second"}'
    assert fetched.source_url == second.url(f"/ipfs/{CID}")
    assert second.count(f"/ipfs/{CID}") == 1


def test_ipfs_gateway_error_falls_through_and_paths_are_kept(file_server, second_file_server):
    file_server.route(f"/ipfs/{CID}/agent.json", b"bad gateway", status=502)
    second_file_server.route(f"/ipfs/{CID}/agent.json", BODY)
    gateways = [file_server.base_url + "/", second_file_server.base_url]
    assert file_fetch(f"ipfs://ipfs/{CID}/agent.json", gateways=gateways).content == BODY
    assert file_fetch(f"ipfs://{CID}/agent.json", gateways=gateways).content == BODY


def test_ipfs_all_gateways_failing(file_server, second_file_server):
    gateways = [file_server.base_url, second_file_server.base_url]
    second_file_server.route(f"/ipfs/{CID}", b"x", status=504)
    error = failure(f"ipfs://{CID}", gateways=gateways)
    assert error.reason.startswith("every IPFS gateway failed")
    assert error.retryable  # one gateway failed transiently
    file_server.route(f"/ipfs/{CID}", b"x", status=404)
    second_file_server.route(f"/ipfs/{CID}", b"x", status=404)
    assert not failure(f"ipfs://{CID}", gateways=gateways).retryable


def test_bad_ipfs_uris():
    assert "not an IPFS CID" in failure("ipfs://not-a-cid!", gateways=["http://127.0.0.1:1"]).reason
    assert ". or .." in failure(f"ipfs://{CID}/../../etc", gateways=["http://127.0.0.1:1"]).reason
