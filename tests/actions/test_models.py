"""actions/models.py and what later layers rely on: secrets never leave as plaintext,
organisations can be deleted, metrics are recorded."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework import serializers

from actions.models import Delivery, Destination
from actions.services import delivery_send
from erc8004.models import Organization
from tests.actions.conftest import BOT_TOKEN, make_delivery

pytestmark = pytest.mark.django_db


class _CarelessSerializer(serializers.ModelSerializer):
    class Meta:
        model = Destination
        fields = "__all__"


def test_a_careless_serializer_still_shows_only_hints(telegram_destination, webhook_destination):
    """DRF includes non-editable fields read-only; the value it renders is the hint."""
    for destination in (telegram_destination, webhook_destination):
        data = json.dumps(_CarelessSerializer(Destination.objects.get(pk=destination.pk)).data, ensure_ascii=False)
        assert BOT_TOKEN not in data
        assert webhook_destination.secret.reveal() not in data
        assert '"secret": "Secret(\'…' in data


def test_model_reprs_hold_no_secret(telegram_destination):
    destination = Destination.objects.get(pk=telegram_destination.pk)
    text = repr(destination) + str(destination) + repr(vars(destination))
    assert BOT_TOKEN not in text
    assert BOT_TOKEN.split(":")[1] not in text


def test_deleting_an_organization_deletes_its_destinations_and_deliveries(webhook_destination):
    make_delivery(webhook_destination)
    Organization.objects.filter(pk=webhook_destination.organization_id).delete()
    assert not Destination.objects.exists()
    assert not Delivery.objects.exists()


def test_latency_and_outcome_metrics(webhook_destination, webhook_receiver):
    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = value("erc8004_delivery_latency_seconds_count", channel="webhook")
    succeeded = value("erc8004_deliveries_total", channel="webhook", status="succeeded")
    delivery = make_delivery(webhook_destination, event_block_timestamp=timezone.now())
    assert delivery_send(delivery_id=delivery.pk) == "succeeded"
    assert value("erc8004_delivery_latency_seconds_count", channel="webhook") == before + 1
    assert value("erc8004_deliveries_total", channel="webhook", status="succeeded") == succeeded + 1
