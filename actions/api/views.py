"""Destinations (CRUD, breaker, test, secret rotation) and deliveries (list with
filters and cursor paging, detail with attempts, replay, cancel).

Thin: every change goes through ``actions/services.py``; every queryset starts from
the request's organization (``erc8004/access.py``), so another organization's rows
are 404s.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from erc8004.access import ORGANIZATION_PARAMETERS, OrganizationScopedMixin
from erc8004.api import Conflict, IdCursorPagination, validation_error_detail
from erc8004.auth import TestSendThrottle
from erc8004.models import Role

from .. import services
from ..models import Delivery, Destination
from ..templates import PayloadError
from .filters import DeliveryFilter
from .serializers import (
    BreakerSerializer,
    DeliveryDetailSerializer,
    DeliverySerializer,
    DestinationCreatedSerializer,
    DestinationSerializer,
    SecretRotatedSerializer,
)

_DESTINATION_FIELDS = set(DestinationSerializer.Meta.fields)


def _destination_errors(exc: DjangoValidationError) -> exceptions.ValidationError:
    """Service errors name config keys (``url``, ``chat_id``…) at the top level;
    the API nests them under ``config`` where they belong."""
    detail = validation_error_detail(exc)
    nested: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for field, messages in detail.items():
        if field in _DESTINATION_FIELDS or field == "non_field_errors":
            nested[field] = messages
        else:
            config[field] = messages
    if config:
        # A problem with config as a whole ("unknown keys: …") next to problems with
        # its keys: the whole-config messages go under config.non_field_errors.
        whole = nested.get("config")
        nested["config"] = {**config, "non_field_errors": whole} if whole else config
    return exceptions.ValidationError(nested)


@extend_schema_view(
    list=extend_schema(summary="Destinations of the organization", tags=["destinations"]),
    retrieve=extend_schema(tags=["destinations"]),
    create=extend_schema(
        summary="Create a destination (member+)", responses={201: DestinationCreatedSerializer}, tags=["destinations"]
    ),
    update=extend_schema(summary="Change a destination (member+; the channel is fixed)", tags=["destinations"]),
    partial_update=extend_schema(summary="Change a destination (member+)", tags=["destinations"]),
    destroy=extend_schema(
        summary="Delete a destination no trigger uses and nothing was sent to (member+)",
        responses={204: None, 409: OpenApiResponse(description="in use: disable it instead")},
        tags=["destinations"],
    ),
)
@extend_schema(parameters=ORGANIZATION_PARAMETERS)
class DestinationViewSet(OrganizationScopedMixin, viewsets.ModelViewSet):
    serializer_class = DestinationSerializer
    pagination_class = IdCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ("channel", "enabled")
    queryset = Destination.objects.none()

    def get_queryset(self) -> QuerySet[Destination]:
        if getattr(self, "swagger_fake_view", False):
            return Destination.objects.none()
        return Destination.objects.filter(organization=self.organization)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            destination = services.destination_create(
                organization=self.organization,
                name=data["name"],
                channel=data["channel"],
                config=data.get("config") or {},
                secret=data.get("secret") or None,
                enabled=data.get("enabled", True),
                rate_limit_per_minute=data.get("rate_limit_per_minute"),
                failure_threshold=data.get("failure_threshold", 5),
                cooldown_seconds=data.get("cooldown_seconds", 60),
            )
        except DjangoValidationError as exc:
            raise _destination_errors(exc) from None
        destination.generated_secret = (
            destination.secret.reveal() if destination.secret and not data.get("secret") else None
        )
        return Response(DestinationCreatedSerializer(destination).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: DestinationSerializer) -> None:
        data = dict(serializer.validated_data)
        data.pop("channel", None)
        secret_given = "secret" in data
        secret = data.pop("secret", None)
        try:
            destination = services.destination_update(destination=serializer.instance, **data)
            if secret_given and (secret or destination.channel != "webhook"):
                services.destination_secret_set(destination=destination, secret=secret or None)
        except DjangoValidationError as exc:
            raise _destination_errors(exc) from None

    def perform_destroy(self, instance: Destination) -> None:
        try:
            instance.delete()
        except ProtectedError:
            raise Conflict("this destination is used by triggers or has deliveries; disable it instead") from None

    @extend_schema(methods=["GET"], responses=BreakerSerializer, summary="Circuit breaker state", tags=["destinations"])
    @extend_schema(
        methods=["POST"],
        request=None,
        responses=BreakerSerializer,
        summary="Reset (close) the breaker (member+)",
        tags=["destinations"],
    )
    @action(detail=True, methods=["get", "post"])
    def breaker(self, request: Request, pk: str | None = None) -> Response:
        destination = self.get_object()
        if request.method == "POST":
            services.breaker_reset(destination_id=destination.pk)
            destination.refresh_from_db()
        return Response(BreakerSerializer(destination).data)

    @extend_schema(
        request=None,
        responses={202: DeliverySerializer},
        summary="Send a test message now (member+; throttled)",
        tags=["destinations"],
    )
    @action(detail=True, methods=["post"], throttle_classes=[TestSendThrottle])
    def test(self, request: Request, pk: str | None = None) -> Response:
        destination = self.get_object()
        try:
            delivery = services.destination_test(destination=destination)
        except PayloadError as exc:
            raise exceptions.ValidationError({"template": [str(exc)]}) from None
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses=SecretRotatedSerializer,
        summary="Webhooks: generate a new signing secret (member+), shown once",
        tags=["destinations"],
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str | None = None) -> Response:
        destination = self.get_object()
        secret = services.destination_secret_rotate(destination=destination)
        destination.refresh_from_db()
        return Response(
            {"secret": secret, "previous_secret_expires_at": destination.previous_secret_expires_at},
        )


@extend_schema_view(
    list=extend_schema(summary="Deliveries, newest first (cursor paging)", tags=["deliveries"]),
    retrieve=extend_schema(summary="A delivery with its payload and attempts", tags=["deliveries"]),
)
@extend_schema(parameters=ORGANIZATION_PARAMETERS)
class DeliveryViewSet(
    OrganizationScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    pagination_class = IdCursorPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = DeliveryFilter
    lookup_field = "uuid"
    lookup_url_kwarg = "id"
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"
    queryset = Delivery.objects.none()
    action_roles = {"replay": Role.MEMBER, "cancel": Role.MEMBER}

    def get_serializer_class(self) -> type:
        return DeliveryDetailSerializer if self.action != "list" else DeliverySerializer

    def get_queryset(self) -> QuerySet[Delivery]:
        if getattr(self, "swagger_fake_view", False):
            return Delivery.objects.none()
        qs = Delivery.objects.filter(organization=self.organization).select_related("destination", "retracts")
        if self.action != "list":
            qs = qs.prefetch_related("attempts")
        return qs

    def get_object(self) -> Delivery:
        try:
            return super().get_object()
        except DjangoValidationError:  # a malformed uuid
            raise exceptions.NotFound() from None

    @extend_schema(
        request=None,
        responses={200: DeliveryDetailSerializer, 409: OpenApiResponse(description="not dead")},
        summary="Replay a dead delivery (dead → pending; member+)",
        tags=["deliveries"],
    )
    @action(detail=True, methods=["post"])
    def replay(self, request: Request, id: str | None = None) -> Response:
        delivery = self.get_object()
        if not services.delivery_replay(delivery_id=delivery.pk):
            return Response(
                {"detail": f"only dead deliveries are replayed; this one is {delivery.status}"},
                status=status.HTTP_409_CONFLICT,
            )
        delivery.refresh_from_db()
        return Response(DeliveryDetailSerializer(delivery).data)

    @extend_schema(
        request=None,
        responses={200: DeliveryDetailSerializer, 409: OpenApiResponse(description="not waiting")},
        summary="Cancel a waiting delivery (pending/retrying → cancelled; member+)",
        tags=["deliveries"],
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, id: str | None = None) -> Response:
        delivery = self.get_object()
        reason = f"cancelled by {request.user}"
        if not services.delivery_cancel(delivery_id=delivery.pk, reason=reason):
            return Response(
                {"detail": f"only waiting deliveries are cancelled; this one is {delivery.status}"},
                status=status.HTTP_409_CONFLICT,
            )
        delivery.refresh_from_db()
        return Response(DeliveryDetailSerializer(delivery).data)
