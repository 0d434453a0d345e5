"""Delivery filters: status, channel, kind, trigger, destination and a time range."""

from __future__ import annotations

import django_filters

from ..models import Channel, Delivery, DeliveryKind, DeliveryStatus


class DeliveryFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=DeliveryStatus.choices)
    channel = django_filters.ChoiceFilter(field_name="destination__channel", choices=Channel.choices)
    kind = django_filters.ChoiceFilter(choices=DeliveryKind.choices)
    trigger = django_filters.NumberFilter(field_name="trigger_id")
    destination = django_filters.NumberFilter(field_name="destination_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Delivery
        fields = ("status", "channel", "kind", "trigger", "destination", "created_after", "created_before")
