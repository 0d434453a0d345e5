"""Views of the read API. Thin: parse the path and query, call selectors, serialize.

Lists are keyset-paginated (erc8004/api.py) over orderings backed by indexes
(agents/models.py), so a page costs the same at the top and a million rows deep, and
every list makes a fixed number of queries whatever the page size.
"""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from erc8004.api import KeysetOrdering, PublicReadMixin, SortKey, error_responses

from ..models import Agent, Feedback, FeedbackResponse, Validation, order_key_average, order_key_time
from ..reputation import reputation_report_get, validation_summary_get
from . import selectors
from .filters import AgentFilter, EventFilter, FeedbackFilter, ValidationFilter
from .selectors import IdentityDirectory, address_normalize
from .serializers import (
    AgentDetailSerializer,
    AgentSerializer,
    EventSerializer,
    FeedbackDetailSerializer,
    FeedbackResponseSerializer,
    FeedbackSerializer,
    ValidationSerializer,
)

__all__ = (
    "AgentDetailApi",
    "AgentFeedbackListApi",
    "AgentListApi",
    "AgentValidationListApi",
    "EventListApi",
    "FeedbackDetailApi",
    "FeedbackListApi",
    "FeedbackResponseListApi",
    "ValidationDetailApi",
    "ValidationListApi",
)

ID = SortKey("id")
ID_ASC = SortKey("id", descending=False)

# Each ordering is unique (ends in the primary key) and matches an index of the same
# expressions and directions (agents/models.py Agent.Meta.indexes).
AGENT_ORDERINGS = {
    "newest": KeysetOrdering(
        "newest", (SortKey("o_registered", "datetime", expression=order_key_time("registered_at")), ID)
    ),
    "most_feedback": KeysetOrdering("most_feedback", (SortKey("feedback_count"), ID)),
    "best_average": KeysetOrdering(
        "best_average", (SortKey("o_average", "decimal", expression=order_key_average("feedback_average")), ID)
    ),
    "recently_active": KeysetOrdering(
        "recently_active", (SortKey("o_active", "datetime", expression=order_key_time("last_activity_at")), ID)
    ),
}
FEEDBACK_ORDERINGS = {
    "newest": KeysetOrdering("newest", (SortKey("created_at", "datetime"), ID)),
    "oldest": KeysetOrdering("oldest", (SortKey("created_at", "datetime", descending=False), ID_ASC)),
}
BY_ID_ORDERINGS = {
    "newest": KeysetOrdering("newest", (ID,)),
    "oldest": KeysetOrdering("oldest", (ID_ASC,)),
}

AGENT_REF_PARAMETER = OpenApiParameter(
    "agent_ref",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="{chain_id}:{agent_id} (the chain's main identity registry) or "
    "{chain_id}:{identity_address}:{agent_id}",
)
LIST_ERRORS = error_responses(400, 429)
DETAIL_ERRORS = error_responses(400, 404, 429)


class _PublicRead(PublicReadMixin, GenericAPIView):
    filter_backends = (DjangoFilterBackend,)

    def get_serializer_context(self) -> dict:
        context = super().get_serializer_context()
        context["directory"] = IdentityDirectory.for_request(self.request)
        return context

    def _agent_ref(self, agent_ref: str) -> selectors.AgentRef:
        try:
            return selectors.agent_ref_parse(agent_ref)
        except ValueError as exc:
            raise exceptions.ValidationError({"agent_ref": [str(exc)]}) from None

    def agent_or_404(self, agent_ref: str) -> Agent:
        directory = IdentityDirectory.for_request(self.request)
        agent = selectors.agent_find(ref=self._agent_ref(agent_ref), directory=directory)
        if agent is None:
            raise exceptions.NotFound(f"No agent {agent_ref}.")
        return agent

    def agent_pk_or_404(self, agent_ref: str) -> int:
        directory = IdentityDirectory.for_request(self.request)
        pk = selectors.agent_pk_find(ref=self._agent_ref(agent_ref), directory=directory)
        if pk is None:
            raise exceptions.NotFound(f"No agent {agent_ref}.")
        return pk


class AgentListApi(_PublicRead, ListAPIView):
    """Agents, filtered and ordered (newest, most_feedback, best_average, recently_active)."""

    serializer_class = AgentSerializer
    filterset_class = AgentFilter
    orderings = AGENT_ORDERINGS
    default_ordering = "newest"

    def get_queryset(self):
        return selectors.agent_list_queryset()

    @extend_schema(responses={200: AgentSerializer(many=True), **LIST_ERRORS})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class _AddressList(serializers.CharField):
    def to_internal_value(self, data: str) -> list[str]:
        items = [v for v in (p.strip() for p in super().to_internal_value(data).split(",")) if v]
        if len(items) > 200:
            raise serializers.ValidationError("At most 200 addresses.")
        try:
            return [address_normalize(v) for v in items]
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


class SummaryParamsSerializer(serializers.Serializer):
    """Query parameters of the agent detail's summaries (getSummary's arguments)."""

    clients = _AddressList(
        required=False,
        help_text="Comma-separated client addresses for the reputation summary (as getSummary's clientAddresses; "
        "a client listed twice counts twice, as on-chain). Default: every client.",
    )
    tag1 = serializers.CharField(required=False, default="", max_length=1000, help_text="Reputation: exact tag1")
    tag2 = serializers.CharField(required=False, default="", max_length=1000, help_text="Reputation: exact tag2")
    validators = _AddressList(required=False, help_text="Comma-separated validator addresses (default: all)")
    tag = serializers.CharField(required=False, default="", max_length=1000, help_text="Validation: exact tag")


class AgentDetailApi(_PublicRead):
    """One agent: registration file (parsed and raw), services, metadata, operators,
    reputation (overall and per tag1, with getSummary's on-chain figures) and
    validation summary."""

    serializer_class = AgentDetailSerializer
    filter_backends = ()
    pagination_class = None

    @extend_schema(
        parameters=[AGENT_REF_PARAMETER, SummaryParamsSerializer],
        responses={200: AgentDetailSerializer, **DETAIL_ERRORS},
    )
    def get(self, request: Request, agent_ref: str) -> Response:
        agent = self.agent_or_404(agent_ref)
        params = SummaryParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        p = params.validated_data
        agent.detail_metadata = selectors.agent_metadata_list(agent=agent)
        agent.detail_operators = selectors.agent_operators_list(agent=agent)
        agent.detail_reputation = reputation_report_get(
            agent=agent, clients=p.get("clients"), tag1=p["tag1"], tag2=p["tag2"]
        )
        agent.detail_validation = validation_summary_get(agent=agent, validators=p.get("validators"), tag=p["tag"])
        return Response(self.get_serializer(agent).data)


class FeedbackListApi(_PublicRead, ListAPIView):
    """Feedback across agents: by agent, client, tags, revocation, value range, responses."""

    serializer_class = FeedbackSerializer
    filterset_class = FeedbackFilter
    orderings = FEEDBACK_ORDERINGS
    default_ordering = "newest"

    def get_queryset(self):
        return selectors.feedback_list_queryset()

    @extend_schema(responses={200: FeedbackSerializer(many=True), **LIST_ERRORS})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class AgentFeedbackListApi(FeedbackListApi):
    """One agent's feedback (the same filters as /feedback/)."""

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no path arguments
            return Feedback.objects.none()
        return selectors.feedback_list_queryset().filter(agent_id=self.agent_pk_or_404(self.kwargs["agent_ref"]))

    @extend_schema(parameters=[AGENT_REF_PARAMETER], responses={200: FeedbackSerializer(many=True), **DETAIL_ERRORS})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return ListAPIView.get(self, request, *args, **kwargs)


class _FeedbackLookup(_PublicRead):
    def feedback_or_404(self, feedback_ref: str) -> Feedback:
        try:
            ref = selectors.feedback_ref_parse(feedback_ref)
        except ValueError as exc:
            raise exceptions.ValidationError({"feedback_ref": [str(exc)]}) from None
        feedback = selectors.feedback_find(ref=ref, directory=IdentityDirectory.for_request(self.request))
        if feedback is None:
            raise exceptions.NotFound(f"No feedback {feedback_ref}.")
        return feedback


FEEDBACK_REF_PARAMETER = OpenApiParameter(
    "feedback_ref",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    description="{agent id}:{client address}:{feedback index}, e.g. 8453:22:0xAbC…:1",
)


class FeedbackDetailApi(_FeedbackLookup):
    """One feedback with its off-chain file (parsed fields, hash check, raw text)."""

    serializer_class = FeedbackDetailSerializer
    filter_backends = ()
    pagination_class = None

    @extend_schema(parameters=[FEEDBACK_REF_PARAMETER], responses={200: FeedbackDetailSerializer, **DETAIL_ERRORS})
    def get(self, request: Request, feedback_ref: str) -> Response:
        return Response(self.get_serializer(self.feedback_or_404(feedback_ref)).data)


class FeedbackResponseListApi(_FeedbackLookup, ListAPIView):
    """Responses appended to one feedback, oldest first (anyone may respond, repeatedly)."""

    serializer_class = FeedbackResponseSerializer
    filter_backends = ()
    orderings = {"oldest": KeysetOrdering("oldest", (ID_ASC,))}
    default_ordering = "oldest"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no path arguments
            return FeedbackResponse.objects.none()
        return selectors.response_list_queryset(feedback=self.feedback_or_404(self.kwargs["feedback_ref"]))

    @extend_schema(
        parameters=[FEEDBACK_REF_PARAMETER], responses={200: FeedbackResponseSerializer(many=True), **DETAIL_ERRORS}
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class ValidationListApi(_PublicRead, ListAPIView):
    """Validation requests and their latest responses."""

    serializer_class = ValidationSerializer
    filterset_class = ValidationFilter
    orderings = BY_ID_ORDERINGS
    default_ordering = "newest"

    def get_queryset(self):
        return selectors.validation_list_queryset()

    @extend_schema(responses={200: ValidationSerializer(many=True), **LIST_ERRORS})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class AgentValidationListApi(ValidationListApi):
    """One agent's validations (the same filters as /validations/)."""

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no path arguments
            return Validation.objects.none()
        return selectors.validation_list_queryset().filter(agent_id=self.agent_pk_or_404(self.kwargs["agent_ref"]))

    @extend_schema(parameters=[AGENT_REF_PARAMETER], responses={200: ValidationSerializer(many=True), **DETAIL_ERRORS})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return ListAPIView.get(self, request, *args, **kwargs)


class ValidationDetailApi(_PublicRead):
    serializer_class = ValidationSerializer
    filter_backends = ()
    pagination_class = None

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "validation_ref", OpenApiTypes.STR, OpenApiParameter.PATH, description="{chain_id}:{request_hash}"
            )
        ],
        responses={200: ValidationSerializer, **DETAIL_ERRORS},
    )
    def get(self, request: Request, validation_ref: str) -> Response:
        chain, _, request_hash = validation_ref.partition(":")
        if not chain.isdigit() or not request_hash:
            raise exceptions.ValidationError({"validation_ref": ["A validation id is {chain_id}:{request_hash}."]})
        validation = selectors.validation_find(chain_id=int(chain), request_hash=request_hash)
        if validation is None:
            raise exceptions.NotFound(f"No validation {validation_ref}.")
        return Response(self.get_serializer(validation).data)


class EventListApi(_PublicRead, ListAPIView):
    """The raw decoded event feed (events orphaned by reorgs are excluded unless
    ``include_removed=true``)."""

    serializer_class = EventSerializer
    filterset_class = EventFilter
    orderings = BY_ID_ORDERINGS
    default_ordering = "newest"

    def get_queryset(self):
        return selectors.event_list_queryset()

    @extend_schema(responses={200: EventSerializer(many=True), **LIST_ERRORS})
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)
