"""The read model in the admin: agents, feedback and validations are browsable and
searchable, never editable (the chain is the source of truth; the projector and the
fetcher write these rows). Operators can ask for a registration file to be fetched
again — the one action that changes anything, and it only schedules a fetch."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from .models import Agent, AgentMetadata, Feedback, FeedbackFile, FeedbackResponse, RegistrationFile, Validation
from .services import feedback_files_schedule, registration_files_schedule
from .tasks import enqueue_file_fetches


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class RegistrationFileInline(ReadOnlyMixin, admin.StackedInline):
    model = RegistrationFile
    can_delete = False
    fields = (
        "uri",
        "status",
        "error",
        "attempts",
        "requested_at",
        "next_attempt_at",
        "fetched_at",
        "next_refetch_at",
        "source_url",
        "content_type",
        "size",
        "content_hash",
        "parsed",
        "raw",
    )
    readonly_fields = fields


class AgentMetadataInline(ReadOnlyMixin, admin.TabularInline):
    model = AgentMetadata
    fields = ("key", "value", "updated_block", "updated_at")
    readonly_fields = fields
    extra = 0


@admin.register(Agent)
class AgentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "public_id",
        "name",
        "owner",
        "file_status",
        "has_mcp",
        "has_a2a",
        "feedback_count",
        "feedback_average",
        "validation_count",
        "registered_at",
    )
    list_filter = ("chain", "registration_file__status", "has_mcp", "has_a2a", "has_web", "active", "x402_support")
    # Exact matches use indexes (owner, wallet, the unique key); name is a contains search.
    search_fields = ("=owner", "=agent_wallet", "=agent_id", "name", "=agent_uri")
    list_select_related = ("registration_file",)
    show_full_result_count = False  # COUNT(*) over every agent on each page is slow
    inlines = (RegistrationFileInline, AgentMetadataInline)
    actions = ("refetch_registration_file",)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [f.name for f in Agent._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).defer("registration_file__raw", "registration_file__parsed")

    @admin.display(description="id")
    def public_id(self, agent: Agent) -> str:
        return f"{agent.chain_id}:{agent.agent_id}"

    @admin.display(description="file", ordering="registration_file__status")
    def file_status(self, agent: Agent) -> str:
        file = agent.registration_file if hasattr(agent, "registration_file") else None  # may not exist yet
        if file is None:
            return "-"
        if file.error:
            return format_html('<span title="{}">{}: {}</span>', file.error, file.status, file.error[:60])
        return file.status

    @admin.action(description="Re-fetch registration file")
    def refetch_registration_file(self, request: HttpRequest, queryset: QuerySet) -> None:
        pks = registration_files_schedule(agent_pks=list(queryset.values_list("pk", flat=True)[:1000]), force=True)
        enqueue_file_fetches(agent_pks=pks, feedback_pks=[])
        self.message_user(request, f"{len(pks)} registration file fetch(es) scheduled.", messages.INFO)


class FeedbackFileInline(ReadOnlyMixin, admin.StackedInline):
    model = FeedbackFile
    can_delete = False
    fields = (
        "uri",
        "status",
        "hash_status",
        "error",
        "attempts",
        "fetched_at",
        "source_url",
        "content_hash",
        "text",
        "mcp",
        "a2a",
        "oasf",
        "proof_of_payment",
        "raw",
    )
    readonly_fields = fields


class FeedbackResponseInline(ReadOnlyMixin, admin.TabularInline):
    model = FeedbackResponse
    fields = ("responder", "response_uri", "response_hash", "created_block", "created_at")
    readonly_fields = fields
    extra = 0


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "agent",
        "client_address",
        "feedback_index",
        "value_normalized",
        "tag1",
        "revoked",
        "file_status",
        "created_at",
    )
    list_filter = ("revoked", "abi_version", "file__status", "file__hash_status")
    search_fields = ("=client_address", "=tx_hash", "=agent__agent_id")
    list_select_related = ("agent", "file")
    show_full_result_count = False
    raw_id_fields = ("agent", "event")
    inlines = (FeedbackFileInline, FeedbackResponseInline)
    actions = ("refetch_feedback_file",)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [f.name for f in Feedback._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).defer("file__raw", "file__parsed")

    @admin.display(description="file")
    def file_status(self, feedback: Feedback) -> str:
        file = feedback.file if hasattr(feedback, "file") else None
        return "-" if file is None else f"{file.status} / hash {file.hash_status}"

    @admin.action(description="Re-fetch feedback file")
    def refetch_feedback_file(self, request: HttpRequest, queryset: QuerySet) -> None:
        pks = feedback_files_schedule(feedback_pks=list(queryset.values_list("pk", flat=True)[:1000]), force=True)
        enqueue_file_fetches(agent_pks=[], feedback_pks=pks)
        self.message_user(request, f"{len(pks)} feedback file fetch(es) scheduled.", messages.INFO)


@admin.register(Validation)
class ValidationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("request_hash", "chain", "agent", "validator_address", "status", "response", "tag", "requested_at")
    list_filter = ("chain", "status", "abi_version")
    search_fields = ("=request_hash", "=validator_address", "=agent__agent_id")
    list_select_related = ("agent",)
    show_full_result_count = False
    raw_id_fields = ("agent",)

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        return [f.name for f in Validation._meta.fields]
