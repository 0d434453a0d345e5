"""``manage.py demo_setup``: the demo objects of ``make run``, idempotent across runs."""

from __future__ import annotations

import json
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from actions.models import Destination
from erc8004.models import Membership, Organization
from triggers.models import Trigger

pytestmark = pytest.mark.django_db


def test_creates_everything_once_and_keeps_login_and_secret_across_runs(tmp_path):
    demo_file = tmp_path / "demo.json"
    call_command("demo_setup", "--receiver-url", "http://127.0.0.1:8025/hooks/demo", "--output", str(demo_file))
    first = json.loads(demo_file.read_text())
    assert stat.S_IMODE(demo_file.stat().st_mode) == 0o600  # a password and a signing secret

    user = get_user_model().objects.get(username="demo")
    assert user.is_staff
    assert user.is_superuser
    assert user.check_password(first["password"])
    organization = Organization.objects.get(slug="demo")
    assert Membership.objects.get(organization=organization, user=user).role == "owner"
    destination = Destination.objects.get(pk=first["destination_id"])
    assert destination.config["url"] == "http://127.0.0.1:8025/hooks/demo"
    assert first["webhook_secret"].startswith("whsec_")
    triggers = Trigger.objects.filter(organization=organization)
    assert {t.name for t in triggers} == {"Feedback below 50", "New agent with an MCP service"}
    assert all(t.actions.get().destination_id == destination.pk for t in triggers)

    # The next run (the receiver on another port) updates, never duplicates.
    call_command("demo_setup", "--receiver-url", "http://127.0.0.1:9999/hooks/demo", "--output", str(demo_file))
    second = json.loads(demo_file.read_text())
    assert second["password"] == first["password"]
    assert second["webhook_secret"] == first["webhook_secret"]
    assert second["triggers"] == first["triggers"]
    assert get_user_model().objects.filter(username="demo").count() == 1
    assert Destination.objects.filter(organization=organization).count() == 1
    assert Destination.objects.get(pk=first["destination_id"]).config["url"] == "http://127.0.0.1:9999/hooks/demo"
    assert Trigger.objects.filter(organization=organization).count() == 2


def test_refuses_to_run_in_production(tmp_path):
    with override_settings(ENVIRONMENT="production"), pytest.raises(CommandError, match="not in production"):
        call_command("demo_setup", "--receiver-url", "http://127.0.0.1:1/x", "--output", str(tmp_path / "d.json"))
    assert not get_user_model().objects.filter(username="demo").exists()
