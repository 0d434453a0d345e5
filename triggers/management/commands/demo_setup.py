"""``manage.py demo_setup``: the demo objects ``make run`` shows, created once and
brought up to date on every run (idempotent).

* a demo **user** (staff and superuser, so the admin opens with the printed login)
  whose password is kept in the demo file and reused;
* a demo **organization** owned by that user;
* a **webhook destination** pointing at the demo receiver (``manage.py
  demo_receiver``, on loopback — allowed by ``make run``'s ``OUTBOUND_ALLOWLIST``);
  its signing secret goes into the demo file, where the receiver reads it to verify
  every delivery;
* two **triggers** on that destination: "any feedback below 50" and "any new agent
  with an MCP service".

It lives on the top floor because it uses the trigger and destination services.
It refuses to run in production: a superuser with a password in a file is a demo.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from actions.models import Destination
from actions.services import destination_create, destination_update
from erc8004.models import Membership, Organization, Role
from triggers.models import Trigger
from triggers.services import ActionSpec, trigger_create

DESTINATION_NAME = "Demo webhook receiver"
# name → trigger fields (trigger_create)
DEMO_TRIGGERS: dict[str, dict[str, Any]] = {
    "Feedback below 50": {
        "description": "Any NewFeedback whose normalised value is below 50.",
        "event_types": ["NewFeedback"],
        "conditions": {"type": "value_threshold", "op": "lt", "value": 50},
    },
    "New agent with an MCP service": {
        "description": "An agent registered (or its registration file changed) and it offers an MCP endpoint.",
        "event_types": ["Registered", "URIUpdated"],
        "conditions": {"type": "agent_has_service", "service": "MCP"},
        # The services come from the registration file, fetched just after the event
        # is indexed: waiting a few blocks (confirmed mode) lets the fetch land first.
        "confirmation_mode": "confirmed",
        "confirmations": 3,
    },
}


class Command(BaseCommand):
    help = "Create (or refresh) the demo user, organization, webhook destination and triggers used by `make run`."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--receiver-url", required=True, help="URL of the demo webhook receiver")
        parser.add_argument("--output", default="", help="Demo file (default: <ERC8004_VAR_DIR>/run/demo.json)")
        parser.add_argument("--username", default="demo")
        parser.add_argument("--port", type=int, default=0, help="(ignored; kept for older make run versions)")

    def handle(self, *args, **opts) -> None:
        if settings.ENVIRONMENT == "production":
            raise CommandError("demo_setup creates a superuser with a known password: not in production")
        output = Path(opts["output"] or Path(settings.VAR_DIR) / "run" / "demo.json")
        previous = json.loads(output.read_text()) if output.exists() else {}
        password = previous.get("password") if previous.get("username") == opts["username"] else None
        password = password or secrets.token_urlsafe(9)

        with transaction.atomic():
            user = self._user(opts["username"], password)
            organization = self._organization(user)
            destination = self._destination(organization, opts["receiver_url"])
            triggers = [self._trigger(organization, destination, name, spec) for name, spec in DEMO_TRIGGERS.items()]

        demo = {
            "username": user.get_username(),
            "password": password,
            "organization": organization.slug,
            "destination_id": destination.pk,
            "receiver_url": opts["receiver_url"],
            "webhook_secret": destination.secret.reveal(),
            "triggers": [{"id": t.pk, "name": t.name} for t in triggers],
        }
        output.parent.mkdir(parents=True, exist_ok=True)
        # The file holds a password and a signing secret: owner-only, written atomically.
        tmp = output.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(demo, handle, indent=2)
        tmp.replace(output)
        self.stdout.write(
            f"demo ready: user {demo['username']}, organization {organization.slug}, "
            f"destination #{destination.pk} → {opts['receiver_url']}, triggers {[t.pk for t in triggers]}"
        )

    def _user(self, username: str, password: str):
        user, _ = get_user_model().objects.get_or_create(username=username, defaults={"email": f"{username}@localhost"})
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
        return user

    def _organization(self, user) -> Organization:
        organization, _ = Organization.objects.get_or_create(slug="demo", defaults={"name": "Demo"})
        Membership.objects.get_or_create(organization=organization, user=user, defaults={"role": Role.OWNER})
        return organization

    def _destination(self, organization: Organization, url: str) -> Destination:
        destination = Destination.objects.filter(organization=organization, name=DESTINATION_NAME).first()
        if destination is None:
            return destination_create(
                organization=organization, name=DESTINATION_NAME, channel="webhook", config={"url": url}
            )
        # The receiver's port can change between runs; the signing secret stays.
        return destination_update(destination=destination, config={**destination.config, "url": url}, enabled=True)

    def _trigger(self, organization: Organization, destination: Destination, name: str, spec: dict) -> Trigger:
        existing = Trigger.objects.filter(organization=organization, name=name).first()
        if existing is not None:
            return existing
        return trigger_create(
            organization=organization, name=name, actions=[ActionSpec(destination=destination)], **spec
        )
