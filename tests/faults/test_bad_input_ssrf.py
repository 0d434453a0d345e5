"""Fault scenario 7, the SSRF part: every way of spelling "this machine" or "the
private network" — loopback, RFC 1918, link-local and the cloud metadata address,
``[::1]``, IPv4-mapped IPv6, decimal / hex / octal / short IPv4, ``0.0.0.0``,
userinfo tricks, host names that resolve to loopback, and an allowed URL that
redirects to any of those — driven through the product's three entry points with
the operator allow-list EMPTY:

* the API (``POST destinations/``): a literal refused address is a 400 on
  ``config.url``; a host name is accepted (names are checked when connecting, not
  when saved — docs/configuration.md) and then
* a delivery (the real send path, ``actions.services.delivery_send``): the attempt
  is recorded as failed, not retryable, naming the refused address; a destination
  saved while its address was allowed and sent after the operator removed it is
  refused the same way;
* a registration-file fetch (``agents.services.registration_file_fetch``, the
  worker's code): the file row is ``error`` with the refusal as its reason.

Canary servers listen on 127.0.0.1 and [::1] at the ports every target names; the
scenario ends with both having seen zero requests. tests/erc8004/test_outbound.py
checks the address policy itself; this checks that every entry point uses it.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

import pytest
from django.test import override_settings

from actions.models import Attempt, Delivery, DeliveryStatus
from actions.services import delivery_send, destination_create
from agents.models import FileStatus, RegistrationFile
from agents.services import registration_file_fetch, registration_files_schedule
from tests.agents.factories import agent_make, chain_make
from tests.faults.hostile import HostileFileServer
from tests.fixtures.accounts import api_client, make_user
from tests.fixtures.processes import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, pytest.mark.faults]


def _loopback_names() -> list[str]:
    """Names this machine resolves to loopback only (``localhost`` everywhere; others,
    e.g. the container's own host name, where /etc/hosts has them)."""
    names = []
    for name in ("localhost", "LocalHost", socket.gethostname(), "runsc", "vm"):
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
        except (OSError, UnicodeError):
            continue
        if addresses and all(a.startswith("127.") or a == "::1" for a in addresses) and name not in names:
            names.append(name)
    return names


def targets(port: int, port6: int) -> list[str]:
    """Every spelling of a refused target; the loopback ones name the canaries' ports."""
    literal = [
        f"http://127.0.0.1:{port}/hook",
        f"http://127.1:{port}/",
        f"http://2130706433:{port}/",  # decimal
        f"http://0x7f000001:{port}/",  # hex
        f"http://0177.0.0.1:{port}/",  # octal (resolved by the system, then checked)
        f"http://0.0.0.0:{port}/",  # Linux connects this to the local host
        f"http://[::1]:{port6}/",
        f"http://[::ffff:127.0.0.1]:{port}/",  # IPv4-mapped IPv6
        f"http://[::ffff:7f00:1]:{port}/",
        f"http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/",
        f"http://[::]:{port6}/",
        f"https://user:pw@127.0.0.1:{port}/",  # userinfo
        f"http://example.com@127.0.0.1:{port}/",  # looks like example.com, is not
        "http://10.0.0.1/",
        "http://10.255.255.254:8080/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",  # cloud metadata
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS metadata over IPv6 (unique local)
        "http://[fe80::1]/",
        "http://100.64.0.1/",  # CGNAT
    ]
    names = [f"http://{name}:{port}/" for name in _loopback_names()]
    return literal + names


@pytest.fixture
def canaries():
    v4 = HostileFileServer(host="127.0.0.1")
    try:
        v6 = HostileFileServer(host="::1")
    except OSError:  # no IPv6 loopback here: the [::1] targets are still refused, unheard
        v6 = None
    try:
        yield v4, v6
    finally:
        v4.close()
        if v6 is not None:
            v6.close()


def _send_and_wait(delivery_id: int) -> Delivery:
    """The worker's send, here; if the session's in-thread worker took the message
    first, wait for its outcome instead."""
    delivery_send(delivery_id=delivery_id)
    wait_for(
        lambda: Delivery.objects.get(pk=delivery_id).status in (DeliveryStatus.DEAD, DeliveryStatus.SUCCEEDED),
        30,
        what="the delivery's outcome",
    )
    return Delivery.objects.get(pk=delivery_id)


def test_private_targets_are_refused_at_every_entry_point(canaries):
    canary, canary6 = canaries
    port6 = canary6.port if canary6 is not None else canary.port
    all_targets = targets(canary.port, port6)
    named = {f"http://{name}:{canary.port}/" for name in _loopback_names()}  # saved; refused when connecting
    redirector = HostileFileServer(host="127.0.0.1")
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    user = make_user()
    from erc8004.accounts import organization_create

    org = organization_create(name="SSRF", created_by=user)
    client = api_client(user, organization=org)
    chain = chain_make(31337)
    try:
        # 1. Destinations saved while the operator allowed loopback (the test default),
        #    then the allow-list is emptied: the send itself must refuse.
        saved = [
            destination_create(organization=org, name=f"was-allowed-{i}", channel="webhook", config={"url": url})
            for i, url in enumerate([f"http://127.0.0.1:{canary.port}/hook", f"http://[::1]:{port6}/hook"])
        ]
        with override_settings(OUTBOUND_ALLOWLIST=[]):
            for destination in saved:
                response = client.post(f"/api/v1/destinations/{destination.pk}/test/")
                assert response.status_code == 202, response.content
                delivery = _send_and_wait(Delivery.objects.get(uuid=response.json()["id"]).pk)
                _assert_refused(delivery)
                outcomes["delivery refused (saved when allowed)"] += 1

            # 2. Through the API, and then the send, for every target.
            agents = []
            for i, url in enumerate(all_targets):
                for channel, config in (("webhook", {"url": url}), ("mcp", {"url": url, "tool_name": "notify"})):
                    response = client.post(
                        "/api/v1/destinations/",
                        {"name": f"{channel}-{i}", "channel": channel, "config": config},
                        format="json",
                    )
                    if response.status_code == 400:
                        assert "url" in response.json()["errors"]["config"], response.json()
                        outcomes[f"API 400 ({channel})"] += 1
                        continue
                    assert response.status_code == 201, (url, response.content)
                    assert url in named, f"a literal refused address was saved: {url}"
                    sent = client.post(f"/api/v1/destinations/{response.json()['id']}/test/")
                    assert sent.status_code == 202, sent.content
                    delivery = _send_and_wait(Delivery.objects.get(uuid=sent.json()["id"]).pk)
                    _assert_refused(delivery)
                    outcomes[f"delivery refused ({channel})"] += 1
                # 3. A registration file at the target.
                agents.append(agent_make(chain, 100 + i, agent_uri=url))
            # ... and at an allowed host that redirects (302) to each target.
            with override_settings(OUTBOUND_ALLOWLIST=["localhost"]):
                for i, url in enumerate(all_targets):
                    if "localhost" in url.lower():
                        continue  # allowed by name on purpose here
                    redirect = f"http://localhost:{redirector.port}/redirect-to/{quote(url, safe='')}"
                    agents.append(agent_make(chain, 500 + i, agent_uri=redirect))
                    # a webhook does not follow redirects at all: the 302 is the failure
                    destination = destination_create(
                        organization=org, name=f"redirect-{i}", channel="webhook", config={"url": redirect}
                    )
                    delivery = _send_and_wait(_test_delivery(client, destination.pk))
                    assert delivery.status == DeliveryStatus.DEAD
                    assert Attempt.objects.filter(delivery=delivery, response_code=302).exists()
                    outcomes["delivery 302 not followed"] += 1
                redirected = [a.pk for a in agents if a.agent_uri.startswith(f"http://localhost:{redirector.port}/")]
                _fetch(redirected, outcomes, "file fetch refused after a redirect")
            _fetch([a.pk for a in agents if a.pk not in set(redirected)], outcomes, "file fetch refused")
        assert canary.hits == [], f"the canary was reached: {canary.hits}"
        canary6_hits = canary6.hits if canary6 is not None else []
        assert canary6_hits == [], f"the IPv6 canary was reached: {canary6_hits}"
        assert len([h for h in redirector.hits if "/redirect-to/" in h]) >= 2 * len(redirected)  # GETs and POSTs
    finally:
        redirector.close()
    print(
        f"\n[bad-input] SSRF: {len(all_targets)} targets, {sum(outcomes.values())} refusals, canary hits 0 "
        f"(v4 {len(canary.hits)}, v6 {len(canary6_hits) if canary6 is not None else 'n/a'}) "
        f"in {time.monotonic() - started:.1f}s; " + ", ".join(f"{k}: {n}" for k, n in sorted(outcomes.items()))
    )


def _test_delivery(client: Any, destination_id: int) -> int:
    response = client.post(f"/api/v1/destinations/{destination_id}/test/")
    assert response.status_code == 202, response.content
    return Delivery.objects.get(uuid=response.json()["id"]).pk


def _assert_refused(delivery: Delivery) -> None:
    assert delivery.status == DeliveryStatus.DEAD, (delivery.status, delivery.last_error)
    attempt = Attempt.objects.filter(delivery=delivery).order_by("-number").first()
    assert attempt is not None
    assert not attempt.retryable
    assert "public address" in attempt.error, attempt.error


def _fetch(agent_pks: list[int], outcomes: Counter[str], label: str) -> None:
    for pk in registration_files_schedule(agent_pks=agent_pks):
        registration_file_fetch(agent_pk=pk)
    for row in RegistrationFile.objects.filter(pk__in=agent_pks):
        assert row.status == FileStatus.ERROR, (row.uri, row.status)
        assert "public address" in row.error, (row.uri, row.error)
        outcomes[label] += 1
