"""The admin must be pleasant: headless Chromium (Debian's ``chromium`` package, no
browser download) screenshots the trigger change page and the delivery list from a
live server, after a plain GET proved each page renders (200, no traceback).

The PNGs land in var/screenshots/; with ``UPDATE_SCREENSHOTS=1`` they also replace
the committed ones in docs/screenshots/. Skipped, saying why, only when chromium is
not installed (``make deps`` installs it where apt is available).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from actions.models import Attempt, Delivery, DeliveryStatus
from actions.services import destination_create
from tests.actions.conftest import make_delivery
from tests.fixtures.accounts import make_user
from tests.fixtures.factories import make_org
from tests.urls_screenshots import login_link
from triggers.services import ActionSpec, trigger_create

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 1400, 1000

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.urls_screenshots"),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make deps installs it where apt works)"),
]


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed image data)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def screenshot(url: str, target: Path) -> bytes:
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={target}",
                f"--window-size={WIDTH},{HEIGHT}",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    assert target.exists(), result.stderr[-2000:]
    return target.read_bytes()


@pytest.fixture
def admin_data():
    """A realistic page: a trigger with conditions and two actions, and deliveries in
    every state with their attempts."""
    org = make_org("Acme Labs")
    hook = destination_create(
        organization=org, name="ops-webhook", channel="webhook", config={"url": "https://hooks.example.com/erc8004"}
    )
    chat = destination_create(
        organization=org,
        name="alerts-chat",
        channel="telegram",
        config={"chat_id": "-1001234567890", "parse_mode": "HTML"},
        secret="123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ",
    )
    trigger = trigger_create(
        organization=org,
        name="Low feedback on agent 42",
        description="Tell the on-call channel when agent 42 gets a score under 50.",
        chain_ids=[31337, 8453],
        event_types=["NewFeedback"],
        conditions={
            "all": [
                {"type": "agent_id", "values": ["42"]},
                {"type": "value_threshold", "op": "lt", "value": 50},
                {"not": {"type": "tag_equals", "tag": "tag1", "value": "test"}},
            ]
        },
        cooldown_seconds=60,
        actions=[
            ActionSpec(
                destination=hook,
                template='{"agent": "{{ event.agent_id }}", "score": "{{ event.args.valueNormalized }}"}',
            ),
            ActionSpec(
                destination=chat,
                template="<b>Agent {{ event.agent_id }}</b> got {{ event.args.valueNormalized }} from "
                "<code>{{ event.args.clientAddress }}</code>",
            ),
        ],
    )
    now = timezone.now()
    states = [
        DeliveryStatus.SUCCEEDED,
        DeliveryStatus.SUCCEEDED,
        DeliveryStatus.DEAD,
        DeliveryStatus.RETRYING,
        DeliveryStatus.PENDING,
        DeliveryStatus.SUCCEEDED,
        DeliveryStatus.CANCELLED,
        DeliveryStatus.SUCCEEDED,
    ]
    for i, status in enumerate(states):
        destination = hook if i % 2 == 0 else chat
        delivery = make_delivery(destination, trigger_id=trigger.pk, event_id=1000 + i)
        attempts = {"succeeded": 1, "dead": 8, "retrying": 2, "pending": 0, "cancelled": 1}[status]
        Delivery.objects.filter(pk=delivery.pk).update(
            status=status,
            attempt_count=attempts,
            created_at=now - timedelta(minutes=7 * i),
            next_attempt_at=now + timedelta(minutes=2) if status == DeliveryStatus.RETRYING else None,
            last_error="HTTP 503 from receiver" if status in ("dead", "retrying") else "",
        )
        for n in range(1, attempts + 1):
            ok = status == DeliveryStatus.SUCCEEDED and n == attempts
            Attempt.objects.create(
                delivery=delivery,
                number=n,
                started_at=now - timedelta(minutes=7 * i) + timedelta(seconds=n),
                duration_ms=40 + 13 * n,
                outcome="success" if ok else "failure",
                retryable=not ok,
                response_code=200 if ok else 503,
            )
    user = get_user_model().objects.create_superuser("operator", "ops@example.com", "pw")
    make_user()  # an ordinary account beside it
    return {"trigger": trigger, "user": user}


PAGES = {
    "admin-trigger-change": lambda d: f"/admin/triggers/trigger/{d['trigger'].pk}/change/",
    "admin-delivery-list": lambda d: "/admin/actions/delivery/",
}


@pytest.mark.parametrize("name", list(PAGES))
def test_admin_screenshot(live_server, client, admin_data, name):
    path = PAGES[name](admin_data)
    client.force_login(admin_data["user"])
    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Traceback" not in html
    assert "errornote" not in html
    if name == "admin-trigger-change":
        assert "Low feedback on agent 42" in html
        assert "value_threshold" in html
    else:
        assert html.count("<tr") >= 9  # header + 8 deliveries

    out_dir = Path(settings.BASE_DIR) / "var" / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.png"
    target.unlink(missing_ok=True)
    data = screenshot(live_server.url + login_link(admin_data["user"], path), target)
    width, height, distinct = png_facts(data)
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(data) > 40_000, f"{len(data)} bytes: an unstyled or empty page?"
    assert distinct > 100, "the image is nearly uniform (blank page)"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        docs = Path(settings.BASE_DIR) / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, docs / target.name)
