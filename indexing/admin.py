"""Operators configure chains here: RPC endpoints, deployments, polling policy.
Indexed events and undecodable logs are browsable, never editable."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import BlockRecord, Chain, ChainCursor, ChainEvent, ContractDeployment, RpcEndpoint, UnknownLog
from .services import chain_reindex_from


class RpcEndpointInline(admin.TabularInline):
    model = RpcEndpoint
    extra = 0
    fields = ("url", "ws_url", "priority", "enabled", "last_success_at", "last_error_at", "last_error")
    readonly_fields = ("last_success_at", "last_error_at", "last_error")


class ContractDeploymentInline(admin.TabularInline):
    model = ContractDeployment
    extra = 0
    fields = ("registry", "address", "abi_version", "identity_address", "start_block", "enabled", "label")


class ChainCursorInline(admin.StackedInline):
    model = ChainCursor
    can_delete = False
    extra = 0
    readonly_fields = [f.name for f in ChainCursor._meta.fields if f.name != "chain"]

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Chain)
class ChainAdmin(admin.ModelAdmin):
    list_display = ("chain_id", "name", "enabled", "is_testnet", "confirmations", "indexed_block", "head", "error")
    list_filter = ("enabled", "is_testnet")
    search_fields = ("name", "chain_id")
    inlines = (RpcEndpointInline, ContractDeploymentInline, ChainCursorInline)
    actions = ("enable", "disable", "reindex_from_start")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("cursor")

    @admin.display(description="indexed")
    def indexed_block(self, chain: Chain):
        cursor = getattr(chain, "cursor", None)
        return cursor.last_block_number if cursor else None

    @admin.display(description="head")
    def head(self, chain: Chain):
        cursor = getattr(chain, "cursor", None)
        return cursor.head_block if cursor else None

    @admin.display(description="last error")
    def error(self, chain: Chain) -> str:
        cursor = getattr(chain, "cursor", None)
        return (cursor.last_error[:80] if cursor else "") or "-"

    @admin.action(description="Enable polling")
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        queryset.update(enabled=True)

    @admin.action(description="Disable polling")
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        queryset.update(enabled=False)

    @admin.action(description="Re-index from the earliest deployment start block")
    def reindex_from_start(self, request: HttpRequest, queryset: QuerySet) -> None:
        for chain in queryset:
            starts = [d.start_block for d in chain.deployments.filter(enabled=True)]
            if starts:
                chain_reindex_from(chain_id=chain.chain_id, block=min(starts))
        self.message_user(request, "Cursor moved back; stored events are kept, missing ones added.", messages.INFO)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ChainEvent)
class ChainEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "chain", "block_number", "log_index", "event_type", "agent_id", "removed", "is_backfill")
    list_filter = ("chain", "registry", "event_type", "removed", "is_backfill", "abi_version")
    search_fields = ("tx_hash", "block_hash", "address")
    show_full_result_count = False  # COUNT(*) over millions of events is slow


@admin.register(UnknownLog)
class UnknownLogAdmin(ReadOnlyAdmin):
    list_display = ("id", "chain", "block_number", "log_index", "address", "reason")
    list_filter = ("chain",)


@admin.register(BlockRecord)
class BlockRecordAdmin(ReadOnlyAdmin):
    list_display = ("chain", "number", "hash", "timestamp")
    list_filter = ("chain",)
