"""Query parameters of the read API as django-filter FilterSets.

Every parameter is validated: a bad address, id, number, boolean or choice is a 400
naming the parameter (DjangoFilterBackend raises the form errors), never silently
ignored — a filter that quietly does nothing returns wrong answers that look right.

Tags, like every unbounded on-chain string, are matched through their hash columns
(indexed) and then compared exactly.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any, ClassVar

import django_filters as filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import QueryDict
from django_filters.filters import FilterMethod
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from indexing.decoding import EVENT_TYPES
from indexing.models import ChainEvent, Registry

from ..models import (
    Agent,
    Feedback,
    FeedbackFile,
    FeedbackResponse,
    FileStatus,
    OperatorApproval,
    Validation,
    text_hash,
)
from .selectors import AgentRef, IdentityDirectory, address_normalize, agent_pk_find, agent_ref_parse

__all__ = ("AgentFilter", "EventFilter", "FeedbackFilter", "ValidationFilter")

MAX_LIST_VALUES = 100
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _invalid(message: str) -> forms.ValidationError:
    """A message quoting what the client sent, as a parameter: django-filter renders
    every message as ``message % params``, so a bare "%" in the quoted text (e.g.
    ``?identity=%``) raised TypeError — a 500."""
    return forms.ValidationError("%(reason)s", params={"reason": message})


class AddressField(forms.CharField):
    def clean(self, value: Any) -> str | None:
        value = super().clean(value)
        if not value:
            return None
        try:
            return address_normalize(value)
        except ValueError as exc:
            raise _invalid(str(exc)) from None


class AddressListField(forms.CharField):
    def clean(self, value: Any) -> list[str] | None:
        value = super().clean(value)
        if not value:
            return None
        items = [v for v in (p.strip() for p in value.split(",")) if v]
        if len(items) > MAX_LIST_VALUES:
            raise forms.ValidationError(f"At most {MAX_LIST_VALUES} addresses.")
        try:
            return [address_normalize(v) for v in items]
        except ValueError as exc:
            raise _invalid(str(exc)) from None


class AgentRefField(forms.CharField):
    def clean(self, value: Any) -> AgentRef | None:
        value = super().clean(value)
        if not value:
            return None
        try:
            return agent_ref_parse(value)
        except ValueError as exc:
            raise _invalid(str(exc)) from None


class StrictBooleanField(forms.CharField):
    """true/false (also 1/0, yes/no); anything else is an error, not "no filter"."""

    def clean(self, value: Any) -> bool | None:
        value = super().clean(value)
        if value in (None, ""):
            return None
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise forms.ValidationError("Must be true or false.")


@extend_schema_field(OpenApiTypes.STR)
class AddressFilter(filters.Filter):
    field_class = AddressField


@extend_schema_field({"type": "string", "description": "Comma-separated 0x addresses"})
class AddressInFilter(filters.Filter):
    field_class = AddressListField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("lookup_expr", "in")
        super().__init__(*args, **kwargs)


@extend_schema_field(OpenApiTypes.STR)
class AgentRefFilter(filters.Filter):
    field_class = AgentRefField


@extend_schema_field(OpenApiTypes.BOOL)
class StrictBooleanFilter(filters.Filter):
    field_class = StrictBooleanField


@extend_schema_field(OpenApiTypes.INT)
class IntegerFilter(filters.Filter):
    field_class = forms.IntegerField


@extend_schema_field({"type": "string", "description": "Comma-separated chain ids"})
class IntegerInFilter(filters.BaseInFilter, filters.NumberFilter):
    pass


class OrderingChoiceFilter(filters.ChoiceFilter):
    """Validates and documents ``ordering``; the keyset paginator applies it."""

    def filter(self, qs: QuerySet, value: Any) -> QuerySet:
        return qs


class FastFilterSet(filters.FilterSet):
    """A FilterSet that is cheap to instantiate on every request.

    django-filter deep-copies every declared filter and builds a new form class per
    request — about 3 ms for twenty filters, a third of a list request's CPU. Filters are
    never mutated after construction here, so a shallow copy per request is enough (each
    request still owns its filter objects, so ``parent`` is never shared between threads;
    method filters get a ``FilterMethod`` bound to the copy), and the form class is built
    once per FilterSet class (Django's Form deep-copies its fields for every instance).
    """

    _form_classes: ClassVar[dict[type, type]] = {}

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        if queryset is None:
            queryset = self._meta.model._default_manager.all()
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = OrderedDict()
        for name, base in self.base_filters.items():
            filter_ = copy.copy(base)
            if isinstance(filter_.__dict__.get("filter"), FilterMethod):
                filter_.filter = FilterMethod(filter_)
            filter_.model = queryset.model
            filter_.parent = self
            self.filters[name] = filter_

    def get_form_class(self) -> type:
        form_class = self._form_classes.get(type(self))
        if form_class is None:
            form_class = self._form_classes[type(self)] = super().get_form_class()
        return form_class


def _tag_q(prefix: str, field: str, value: str) -> Q:
    return Q(**{f"{prefix}{field}_hash": text_hash(value), f"{prefix}{field}": value})


class _AgentScoped(FastFilterSet):
    """``agent=`` for rows that belong to an agent: resolved to the agent's primary key
    first (one indexed lookup), so the list query uses the per-agent index."""

    agent = AgentRefFilter(method="filter_agent", help_text="Agent id: {chain_id}:{agent_id}")

    def filter_agent(self, queryset: QuerySet, name: str, value: AgentRef) -> QuerySet:
        directory = IdentityDirectory.for_request(self.request)
        pk = agent_pk_find(ref=value, directory=directory)
        return queryset.filter(agent_id=pk) if pk is not None else queryset.none()


class AgentFilter(FastFilterSet):
    chain = IntegerInFilter(field_name="chain_id", help_text="Chain id(s), comma-separated")
    identity = AddressFilter(field_name="identity_address", help_text="Identity registry address")
    owner = AddressInFilter(field_name="owner", help_text="Owner address(es), comma-separated")
    wallet = AddressFilter(field_name="agent_wallet", help_text="The agentWallet (verified on-chain metadata)")
    operator = AddressFilter(method="filter_operator", help_text="An approved address or operator of the owner")
    has_mcp = StrictBooleanFilter(field_name="has_mcp", help_text="Registration file lists an MCP service")
    has_a2a = StrictBooleanFilter(field_name="has_a2a", help_text="Registration file lists an A2A service")
    has_web = StrictBooleanFilter(field_name="has_web", help_text="Registration file lists a web service")
    active = StrictBooleanFilter(field_name="active", help_text="The file's active flag")
    x402_support = StrictBooleanFilter(field_name="x402_support", help_text="The file's x402Support flag")
    backlink = StrictBooleanFilter(
        field_name="registrations_backlink", help_text="The file's registrations name this agent back"
    )
    supported_trust = filters.CharFilter(
        method="filter_supported_trust", max_length=100, help_text="e.g. reputation, crypto-economic"
    )
    q = filters.CharFilter(
        method="filter_text", max_length=200, help_text="Text in the name or description (case-insensitive)"
    )
    registered_after = filters.IsoDateTimeFilter(field_name="registered_at", lookup_expr="gte")
    registered_before = filters.IsoDateTimeFilter(field_name="registered_at", lookup_expr="lt")
    min_feedback = IntegerFilter(field_name="feedback_count", lookup_expr="gte", help_text="Non-revoked feedback")
    min_average = filters.NumberFilter(field_name="feedback_average", lookup_expr="gte")
    max_average = filters.NumberFilter(field_name="feedback_average", lookup_expr="lte")
    file_status = filters.ChoiceFilter(field_name="registration_file__status", choices=FileStatus.choices)
    ordering = OrderingChoiceFilter(
        choices=[
            ("newest", "Newest registration first"),
            ("most_feedback", "Most non-revoked feedback first"),
            ("best_average", "Best average feedback value first (agents without feedback last)"),
            ("recently_active", "Most recent on-chain activity first"),
        ],
        help_text="Default: newest",
    )

    class Meta:
        model = Agent
        fields: list[str] = []

    def filter_operator(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        operators = OperatorApproval.objects.filter(
            chain_id=OuterRef("chain_id"),
            identity_address=OuterRef("identity_address"),
            owner=OuterRef("owner"),
            operator=value,
            approved=True,
        )
        return queryset.filter(Q(approved=value) | Q(Exists(operators)))

    def filter_supported_trust(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # The JSON text of the list contains the quoted value: an exact element match that
        # works on PostgreSQL and SQLite alike (JSON containment does not exist on SQLite).
        return queryset.filter(supported_trust__icontains=f'"{value}"')

    def filter_text(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))


class FeedbackFilter(_AgentScoped):
    chain = IntegerInFilter(field_name="agent__chain_id", help_text="Chain id(s), comma-separated")
    client = AddressInFilter(field_name="client_address", help_text="Client address(es), comma-separated")
    tag1 = filters.CharFilter(method="filter_tag1", help_text="Exact tag1")
    tag2 = filters.CharFilter(method="filter_tag2", help_text="Exact tag2")
    tag = filters.CharFilter(method="filter_tag", help_text="Exact tag in either position")
    revoked = StrictBooleanFilter(field_name="revoked")
    value_min = filters.NumberFilter(field_name="value_normalized", lookup_expr="gte", help_text="value/10^decimals")
    value_max = filters.NumberFilter(field_name="value_normalized", lookup_expr="lte", help_text="value/10^decimals")
    has_response = StrictBooleanFilter(method="filter_has_response")
    file_status = filters.ChoiceFilter(field_name="file__status", choices=FileStatus.choices)
    hash_status = filters.ChoiceFilter(field_name="file__hash_status", choices=FeedbackFile.HashStatus.choices)
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    ordering = OrderingChoiceFilter(
        choices=[("newest", "Newest first"), ("oldest", "Oldest first")], help_text="Default: newest"
    )

    class Meta:
        model = Feedback
        fields: list[str] = []

    def filter_tag1(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_tag_q("", "tag1", value))

    def filter_tag2(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_tag_q("", "tag2", value))

    def filter_tag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_tag_q("", "tag1", value) | _tag_q("", "tag2", value))

    def filter_has_response(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        responded = Exists(FeedbackResponse.objects.filter(feedback=OuterRef("pk")))
        return queryset.filter(responded if value else ~responded)


class ValidationFilter(_AgentScoped):
    chain = IntegerInFilter(field_name="chain_id", help_text="Chain id(s), comma-separated")
    validator = AddressInFilter(field_name="validator_address", help_text="Validator address(es), comma-separated")
    status = filters.ChoiceFilter(field_name="status", choices=Validation.Status.choices)
    tag = filters.CharFilter(method="filter_tag", help_text="Exact tag of the latest response")
    ordering = OrderingChoiceFilter(
        choices=[("newest", "Newest first"), ("oldest", "Oldest first")], help_text="Default: newest"
    )

    class Meta:
        model = Validation
        fields: list[str] = []

    def filter_tag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_tag_q("", "tag", value))


class EventFilter(FastFilterSet):
    chain = IntegerInFilter(field_name="chain_id", help_text="Chain id(s), comma-separated")
    registry = filters.ChoiceFilter(field_name="registry", choices=Registry.choices)
    address = AddressFilter(field_name="address", help_text="Emitting contract")
    event_type = filters.MultipleChoiceFilter(
        field_name="event_type", choices=[(t, t) for t in EVENT_TYPES], help_text="Repeat for several"
    )
    agent = AgentRefFilter(method="filter_agent", help_text="Agent id: {chain_id}:{agent_id}")
    block_from = IntegerFilter(field_name="block_number", lookup_expr="gte")
    block_to = IntegerFilter(field_name="block_number", lookup_expr="lte")
    tx_hash = filters.CharFilter(method="filter_tx_hash", max_length=66)
    include_removed = StrictBooleanFilter(method="filter_nothing", help_text="Include events orphaned by reorgs")
    ordering = OrderingChoiceFilter(
        choices=[("newest", "Most recently indexed first"), ("oldest", "Oldest first")], help_text="Default: newest"
    )

    class Meta:
        model = ChainEvent
        fields: list[str] = []

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_removed"):
            queryset = queryset.filter(removed=False)  # removed events are excluded unless asked for
        return queryset

    def filter_nothing(self, queryset: QuerySet, name: str, value: Any) -> QuerySet:
        return queryset

    def filter_tx_hash(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(tx_hash=value.strip().lower())

    def filter_agent(self, queryset: QuerySet, name: str, value: AgentRef) -> QuerySet:
        directory = IdentityDirectory.for_request(self.request)
        identity = directory.identity_of(value)
        if identity is None:
            return queryset.none()
        registries = directory.registries_of(value.chain_id, identity)
        return queryset.filter(chain_id=value.chain_id, agent_id=value.agent_id, address__in=registries)
