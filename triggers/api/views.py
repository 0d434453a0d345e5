"""Trigger management API: CRUD with nested conditions and actions, enable/disable,
dry run, test, a trigger's deliveries, and following an agent.

Every write goes through ``triggers.services.trigger_create`` / ``trigger_update``
(the admin's path too); this module only translates ids into objects and error
messages into the API's shape:

* ``actions[1].destination: no such destination`` → ``{"actions": {"1": {"destination": ["no such destination"]}}}``
* condition errors keep their path: ``{"conditions": ["conditions.all[0].op: unknown operator 'bigger'…"]}``
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import F, Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, generics, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from actions.api.filters import DeliveryFilter
from actions.api.serializers import DeliverySerializer
from actions.models import Delivery, Destination
from agents.selectors import agent_exists
from erc8004.access import ORGANIZATION_PARAMETERS, OrganizationScopedMixin
from erc8004.api import IdCursorPagination, validation_error_detail
from erc8004.auth import TestSendThrottle
from erc8004.models import Role
from indexing.models import ChainEvent

from ..models import Trigger, TriggerAction
from ..services import (
    ActionSpec,
    trigger_create,
    trigger_dry_run,
    trigger_test,
    trigger_update,
    trigger_validate,
    trigger_watched_events,
)
from .serializers import (
    DryRunRequestSerializer,
    DryRunSerializer,
    FollowSerializer,
    TestResultSerializer,
    TriggerSerializer,
    TriggerWriteSerializer,
)

_ACTION_ERROR = re.compile(r"^actions\[(\d+)\]\.(\w+): (.*)$", re.DOTALL)
NO_SUCH_DESTINATION = "no such destination"


def _api_errors(exc: DjangoValidationError, extra: dict[str, Any] | None = None) -> exceptions.ValidationError:
    """Service errors in the API's shape (action errors keyed by index)."""
    detail: dict[str, Any] = dict(extra or {})
    for field, messages in validation_error_detail(exc).items():
        if field != "actions":
            detail.setdefault(field, []).extend(messages)
            continue
        nested = detail.setdefault("actions", {})
        for message in messages:
            match = _ACTION_ERROR.match(message)
            if match:
                nested.setdefault(match.group(1), {}).setdefault(match.group(2), []).append(match.group(3))
            else:
                nested.setdefault("non_field_errors", []).append(message)
    return exceptions.ValidationError(detail)


def _action_specs(organization, actions: list[dict[str, Any]]) -> tuple[list[ActionSpec], dict[str, Any]]:
    """Destination ids → destinations of *this* organization. Another organization's
    destination gets the same answer as one that does not exist."""
    ids = {a["destination"] for a in actions}
    # The secrets are not needed to validate or link an action: skip decrypting them.
    destinations = Destination.objects.filter(organization=organization, pk__in=ids).defer("secret", "previous_secret")
    found = {d.pk: d for d in destinations}
    specs, errors = [], {}
    for index, item in enumerate(actions):
        destination = found.get(item["destination"])
        if destination is None:
            errors[str(index)] = {"destination": [NO_SUCH_DESTINATION]}
            continue
        specs.append(ActionSpec(destination=destination, template=item.get("template") or "", enabled=item["enabled"]))
    return specs, errors


def _check_without_actions(fields: dict[str, Any], trigger: Trigger | None) -> dict[str, Any]:
    """When actions are already known bad, still report filter and condition errors
    (validated together: one response lists every problem)."""
    current = trigger or Trigger()

    def pick(name: str) -> Any:
        return fields.get(name, getattr(current, name))

    try:
        trigger_validate(
            chain_ids=pick("chain_ids") or [],
            registries=pick("registries") or [],
            event_types=pick("event_types") or [],
            conditions=pick("conditions") or {},
            confirmation_mode=pick("confirmation_mode"),
            confirmations=pick("confirmations"),
        )
    except DjangoValidationError as exc:
        return validation_error_detail(exc)
    return {}


def trigger_save(*, organization, data: dict[str, Any], trigger: Trigger | None = None, created_by=None) -> Trigger:
    """Create (``trigger`` None) or update a trigger from validated API data."""
    fields = dict(data)
    actions = fields.pop("actions", None)
    specs = None
    if actions is not None:
        specs, action_errors = _action_specs(organization, actions)
        if action_errors:
            detail = _check_without_actions(fields, trigger)
            detail["actions"] = action_errors
            raise exceptions.ValidationError(detail)
    try:
        if trigger is None:
            return trigger_create(organization=organization, actions=specs, created_by=created_by, **fields)
        return trigger_update(trigger=trigger, actions=specs, **fields)
    except DjangoValidationError as exc:
        raise _api_errors(exc) from None


def _trigger_queryset(organization, *, with_actions: bool = True) -> QuerySet[Trigger]:
    """Triggers with few objects: the creator's username comes as a column, and the
    actions either prefetched (one trigger) or attached as plain rows by
    ``_actions_attach`` (a page of them). Before this, a page of 50 triggers built
    250 model instances and decrypted two Fernet secrets per action — most of a
    list's time (bench/api_write.py)."""
    qs = (
        Trigger.objects.filter(organization=organization)
        .annotate(created_by_username=F("created_by__username"))
        .defer("recent_fires")
    )
    if with_actions:
        qs = qs.prefetch_related(
            Prefetch(
                "actions",
                queryset=TriggerAction.objects.annotate(
                    destination_name=F("destination__name"), destination_channel=F("destination__channel")
                ).order_by("position", "id"),
            )
        )
    return qs


def _actions_attach(triggers: list[Trigger]) -> None:
    """One query for the actions of a page of triggers, as rows (``action_rows``)."""
    rows = (
        TriggerAction.objects.filter(trigger_id__in=[t.pk for t in triggers])
        .order_by("trigger_id", "position", "id")
        .values(
            "id",
            "trigger_id",
            "position",
            "template",
            "enabled",
            destination_ref=F("destination_id"),
            destination_name=F("destination__name"),
            channel=F("destination__channel"),
        )
    )
    by_trigger: dict[int, list[dict[str, Any]]] = {t.pk: [] for t in triggers}
    for row in rows:
        by_trigger[row.pop("trigger_id")].append(row)
    for trigger in triggers:
        trigger.action_rows = by_trigger[trigger.pk]


@extend_schema_view(
    list=extend_schema(summary="Triggers of the organization", tags=["triggers"]),
    retrieve=extend_schema(tags=["triggers"]),
    create=extend_schema(
        summary="Create a trigger with its conditions and actions (member+)",
        request=TriggerWriteSerializer,
        responses={201: TriggerSerializer},
        tags=["triggers"],
    ),
    update=extend_schema(
        summary="Replace a trigger; `actions`, when given, replaces its actions (member+)",
        request=TriggerWriteSerializer,
        responses=TriggerSerializer,
        tags=["triggers"],
    ),
    partial_update=extend_schema(
        summary="Change some fields; `actions`, when given, replaces its actions (member+)",
        request=TriggerWriteSerializer,
        responses=TriggerSerializer,
        tags=["triggers"],
    ),
    destroy=extend_schema(summary="Delete a trigger (member+); its deliveries stay", tags=["triggers"]),
)
@extend_schema(parameters=ORGANIZATION_PARAMETERS)
class TriggerViewSet(OrganizationScopedMixin, viewsets.ModelViewSet):
    serializer_class = TriggerSerializer
    pagination_class = IdCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ("enabled",)
    queryset = Trigger.objects.none()
    # A dry run sends nothing and writes nothing: reading is enough.
    action_roles = {"dry_run": Role.VIEWER}

    def get_queryset(self) -> QuerySet[Trigger]:
        if getattr(self, "swagger_fake_view", False):
            return Trigger.objects.none()
        return _trigger_queryset(self.organization, with_actions=self.action != "list")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        _actions_attach(page)
        return self.get_paginated_response(TriggerSerializer(page, many=True).data)

    def get_serializer_class(self) -> type:
        if self.action in ("create", "update", "partial_update"):
            return TriggerWriteSerializer
        return TriggerSerializer

    def _respond(self, trigger: Trigger, code: int = status.HTTP_200_OK) -> Response:
        trigger = _trigger_queryset(self.organization).get(pk=trigger.pk)
        return Response(TriggerSerializer(trigger, context=self.get_serializer_context()).data, status=code)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = TriggerWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        trigger = trigger_save(organization=self.organization, data=data.validated_data, created_by=self.acting_user())
        return self._respond(trigger, status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        trigger = self.get_object()
        data = TriggerWriteSerializer(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        trigger = trigger_save(organization=self.organization, data=data.validated_data, trigger=trigger)
        return self._respond(trigger)

    @extend_schema(request=None, responses=TriggerSerializer, summary="Enable (member+)", tags=["triggers"])
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str | None = None) -> Response:
        return self._respond(trigger_update(trigger=self.get_object(), enabled=True))

    @extend_schema(request=None, responses=TriggerSerializer, summary="Disable (member+)", tags=["triggers"])
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str | None = None) -> Response:
        return self._respond(trigger_update(trigger=self.get_object(), enabled=False))

    @extend_schema(
        request=DryRunRequestSerializer,
        responses={200: DryRunSerializer, 404: OpenApiResponse(description="no such trigger or event")},
        summary="Dry run against past events: matches and rendered messages, nothing sent (viewer+)",
        tags=["triggers"],
    )
    @action(detail=True, methods=["post"], url_path="dry-run")
    def dry_run(self, request: Request, pk: str | None = None) -> Response:
        trigger = self.get_object()
        data = DryRunRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data.get("event_id"):
            events = [get_object_or_404(ChainEvent.objects.select_related("chain"), pk=data.validated_data["event_id"])]
        else:
            events = trigger_watched_events(trigger=trigger, limit=data.validated_data["last"])
        results = trigger_dry_run(trigger=trigger, events=events)
        body = {
            "events": len(results),
            "matched": sum(1 for r in results if r.matched),
            "results": [
                {
                    "event_id": r.event_id,
                    "event_type": r.event_type,
                    "matched": r.matched,
                    "skipped": r.skipped,
                    "messages": r.messages,
                }
                for r in results
            ],
        }
        return Response(DryRunSerializer(body).data)

    @extend_schema(
        request=None,
        responses={202: TestResultSerializer(many=True)},
        summary="Send one real test message per enabled action, rendered from the newest event the trigger "
        "watches (or a sample one) (member+; throttled)",
        tags=["triggers"],
    )
    @action(detail=True, methods=["post"], throttle_classes=[TestSendThrottle])
    def test(self, request: Request, pk: str | None = None) -> Response:
        trigger = self.get_object()
        if not any(a.enabled for a in trigger.actions.all()):
            raise exceptions.ValidationError({"actions": ["this trigger has no enabled action to test"]})
        results = []
        for sent in trigger_test(trigger=trigger):
            row: dict[str, Any] = {"action": sent.action, "destination": sent.destination}
            if sent.delivery is not None:
                row.update(delivery=sent.delivery.uuid, status=sent.delivery.status)
            else:
                row["error"] = sent.error
            results.append(row)
        return Response(TestResultSerializer(results, many=True).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(
    parameters=ORGANIZATION_PARAMETERS,
    summary="Deliveries a trigger created, newest first (cursor paging; same filters as deliveries/)",
    tags=["triggers"],
)
class TriggerDeliveriesView(OrganizationScopedMixin, generics.ListAPIView):
    serializer_class = DeliverySerializer
    pagination_class = IdCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = DeliveryFilter
    queryset = Delivery.objects.none()

    def get_queryset(self) -> QuerySet[Delivery]:
        if getattr(self, "swagger_fake_view", False):
            return Delivery.objects.none()
        trigger = get_object_or_404(Trigger.objects.filter(organization=self.organization), pk=self.kwargs["pk"])
        return Delivery.objects.filter(organization=self.organization, trigger_id=trigger.pk).select_related(
            "destination", "retracts"
        )


_AGENT_REF = re.compile(r"^(\d{1,18}):(\d{1,78})$")


def _follow_conditions(agent_id: int) -> dict[str, Any]:
    return {"type": "agent_id", "values": [str(agent_id)]}


@extend_schema(
    parameters=[
        *ORGANIZATION_PARAMETERS,
        OpenApiParameter("agent", str, OpenApiParameter.PATH, description="The agent as <chain_id>:<agent_id>"),
    ],
    tags=["triggers"],
)
class AgentFollowView(OrganizationScopedMixin, APIView):
    """Follow an agent: one trigger on every event of that agent (on its chain), with
    the given actions. It is an ordinary trigger (an ``agent_id`` condition and a chain
    filter): list, change or delete it like any other."""

    action_roles: dict[str, str] = {}

    def _agent(self) -> tuple[int, int]:
        match = _AGENT_REF.match(self.kwargs["agent"])
        if match is None:
            raise exceptions.NotFound("agents are named <chain_id>:<agent_id>")
        chain_id, agent_id = int(match.group(1)), int(match.group(2))
        if not agent_exists(chain_id=chain_id, agent_id=agent_id):
            raise exceptions.NotFound("no such agent (not indexed on that chain)")
        return chain_id, agent_id

    def _following(self, chain_id: int, agent_id: int) -> QuerySet[Trigger]:
        return _trigger_queryset(self.organization).filter(
            chain_ids=[chain_id], conditions=_follow_conditions(agent_id)
        )

    @extend_schema(responses=TriggerSerializer(many=True), summary="This organization's follow triggers of the agent")
    def get(self, request: Request, agent: str) -> Response:
        chain_id, agent_id = self._agent()
        return Response(TriggerSerializer(self._following(chain_id, agent_id), many=True).data)

    @extend_schema(
        request=FollowSerializer,
        responses={201: TriggerSerializer},
        summary="Follow the agent: a trigger on its every event, sent to the given actions (member+)",
    )
    def post(self, request: Request, agent: str) -> Response:
        chain_id, agent_id = self._agent()
        data = FollowSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if not data.validated_data["actions"]:
            raise exceptions.ValidationError({"actions": ["give at least one action"]})
        fields = {
            "name": data.validated_data.get("name") or f"Follow {chain_id}:{agent_id}",
            "chain_ids": [chain_id],
            "event_types": data.validated_data.get("event_types") or [],
            "conditions": _follow_conditions(agent_id),
            "actions": data.validated_data["actions"],
        }
        trigger = trigger_save(organization=self.organization, data=fields, created_by=self.acting_user())
        trigger = _trigger_queryset(self.organization).get(pk=trigger.pk)
        return Response(TriggerSerializer(trigger).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None}, summary="Unfollow: delete the follow triggers (member+)")
    def delete(self, request: Request, agent: str) -> Response:
        chain_id, agent_id = self._agent()
        Trigger.objects.filter(pk__in=self._following(chain_id, agent_id).values("pk")).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
