"""Admin: destinations (secrets write-only, breaker state and reset), deliveries
(filters, attempts, replay/cancel). Thin: every change goes through services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from . import services
from .models import Attempt, Delivery, DeliveryStatus, Destination


class DestinationForm(forms.ModelForm):
    """The secret is write-only: an empty field keeps the current one; the page
    shows only a hint (``…ab12``)."""

    new_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Telegram: bot token; webhook: whsec_… signing secret (empty on creation = generate one); "
        "MCP: bearer token. Leave empty to keep the current secret.",
    )

    class Meta:
        model = Destination
        fields = (
            "organization",
            "name",
            "channel",
            "config",
            "enabled",
            "rate_limit_per_minute",
            "failure_threshold",
            "cooldown_seconds",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        channel = data.get("channel") or (self.instance.channel if self.instance.pk else None)
        if channel and data.get("config") is not None:
            from .channels import channel_module

            secret = data.get("new_secret") or (
                self.instance.secret.reveal() if self.instance.pk and self.instance.secret else None
            )
            if channel == "webhook" and not secret:
                secret = None  # generated on save
            try:
                data["config"] = channel_module(channel).config_clean(data["config"], secret=secret)
            except ValidationError as exc:
                field_of = {"secret": "new_secret"}
                raise ValidationError(
                    {field_of.get(k, k if k in self.fields else "config"): v for k, v in exc.message_dict.items()}
                ) from None
        return data


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    fields = (
        "number",
        "started_at",
        "duration_ms",
        "outcome",
        "retryable",
        "response_code",
        "error",
        "response_excerpt",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    form = DestinationForm
    list_display = (
        "name",
        "organization",
        "channel",
        "enabled",
        "breaker_state",
        "consecutive_failures",
        "last_success_at",
    )
    list_filter = ("channel", "enabled", "breaker_state", "organization")
    search_fields = ("name",)
    readonly_fields = (
        "secret_hint_display",
        "previous_secret_expires_at",
        "breaker_state",
        "consecutive_failures",
        "breaker_opened_at",
        "breaker_retry_at",
        "failure_count",
        "last_success_at",
        "last_failure_at",
        "last_error",
        "created_at",
        "updated_at",
    )
    actions = ("reset_breaker", "send_test")

    def get_fields(self, request: HttpRequest, obj: Destination | None = None) -> list[str]:
        fields = [
            "organization",
            "name",
            "channel",
            "config",
            "new_secret",
            "enabled",
            "rate_limit_per_minute",
            "failure_threshold",
            "cooldown_seconds",
        ]
        return [*fields, *self.readonly_fields]

    def get_readonly_fields(self, request: HttpRequest, obj: Destination | None = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "channel") if obj else self.readonly_fields

    @admin.display(description="secret")
    def secret_hint_display(self, obj: Destination) -> str:
        return obj.secret_hint or "(none)"

    def save_model(self, request: HttpRequest, obj: Destination, form: DestinationForm, change: bool) -> None:
        new_secret = form.cleaned_data.get("new_secret") or None
        if not change:
            created = services.destination_create(
                organization=obj.organization,
                name=obj.name,
                channel=obj.channel,
                config=obj.config,
                secret=new_secret,
                enabled=obj.enabled,
                rate_limit_per_minute=obj.rate_limit_per_minute,
                failure_threshold=obj.failure_threshold,
                cooldown_seconds=obj.cooldown_seconds,
            )
            obj.pk = created.pk
            if obj.channel == "webhook" and not new_secret and created.secret:
                messages.warning(
                    request,
                    f"Generated signing secret (shown once, copy it to the receiver now): {created.secret.reveal()}",
                )
            return
        services.destination_update(
            destination=obj,
            name=obj.name,
            config=obj.config,
            enabled=obj.enabled,
            rate_limit_per_minute=obj.rate_limit_per_minute,
            failure_threshold=obj.failure_threshold,
            cooldown_seconds=obj.cooldown_seconds,
        )
        if new_secret:
            services.destination_secret_set(destination=obj, secret=new_secret)

    @admin.action(description="Reset circuit breaker (close it)")
    def reset_breaker(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        for destination in queryset:
            services.breaker_reset(destination_id=destination.pk)
        self.message_user(request, f"Breaker closed for {queryset.count()} destination(s).")

    @admin.action(description="Send a test message")
    def send_test(self, request: HttpRequest, queryset: QuerySet[Destination]) -> None:
        for destination in queryset[:20]:
            try:
                delivery = services.destination_test(destination=destination)
            except Exception as exc:  # a template/config problem is reported, not a 500
                self.message_user(request, f"{destination}: {exc}", messages.ERROR)
                continue
            url = reverse("admin:actions_delivery_change", args=[delivery.pk])
            self.message_user(request, format_html('{}: test queued — <a href="{}">follow it</a>', destination, url))


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "short_id",
        "status_badge",
        "destination",
        "kind",
        "trigger_link",
        "attempts",
        "next_attempt_at",
        "created_at",
    )
    list_display_links = ("short_id",)
    list_filter = ("status", "destination__channel", "kind", "organization", "destination", "created_at")
    search_fields = ("=uuid", "=idempotency_key", "=match_id", "=event_id")
    date_hierarchy = "created_at"
    list_select_related = ("destination",)
    inlines = (AttemptInline,)
    actions = ("replay", "cancel")
    readonly_fields = (
        "uuid",
        "organization",
        "destination",
        "kind",
        "status",
        "idempotency_key",
        "payload",
        "retracts",
        "trigger_id",
        "match_id",
        "event_id",
        "event_block_timestamp",
        "attempt_count",
        "ladder_start",
        "next_attempt_at",
        "dispatched_at",
        "locked_until",
        "last_error",
        "response_data",
        "created_at",
        "sent_at",
        "updated_at",
    )
    fields = readonly_fields

    @admin.display(description="channel", ordering="destination__channel")
    def channel(self, obj: Delivery) -> str:
        return obj.destination.channel

    _STATUS_COLOURS = {
        "succeeded": "#2e7d32",
        "dead": "#c62828",
        "retrying": "#ef6c00",
        "sending": "#1565c0",
        "pending": "#546e7a",
        "cancelled": "#757575",
    }

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Delivery) -> str:
        colour = self._STATUS_COLOURS.get(obj.status, "#546e7a")
        return format_html(
            '<span style="background:{};color:#fff;padding:2px 8px;border-radius:10px;font-size:11px">{}</span>',
            colour,
            obj.get_status_display(),
        )

    @admin.display(description="delivery", ordering="id")
    def short_id(self, obj: Delivery) -> str:
        return format_html('<code title="{}">{}…</code>', obj.uuid, str(obj.uuid)[:8])

    @admin.display(description="attempts", ordering="attempt_count")
    def attempts(self, obj: Delivery) -> int:
        return obj.attempt_count

    @admin.display(description="trigger", ordering="trigger_id")
    def trigger_link(self, obj: Delivery) -> str:
        """By URL name only: this room never imports triggers (DESIGN.md)."""
        if obj.trigger_id is None:
            return "—"
        return format_html(
            '<a href="{}">#{}</a>', reverse("admin:triggers_trigger_change", args=[obj.trigger_id]), obj.trigger_id
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries are created by triggers (or the destination test)

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False  # history: read-only pages; state changes go through the actions below

    def has_delete_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False

    @admin.action(description="Replay (dead → pending)")
    def replay(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        replayed = sum(
            services.delivery_replay(delivery_id=pk)
            for pk in queryset.filter(status=DeliveryStatus.DEAD).values_list("pk", flat=True)
        )
        self.message_user(request, f"{replayed} dead delivery(ies) queued again.", messages.SUCCESS)

    @admin.action(description="Cancel (pending/retrying → cancelled)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        cancelled = sum(
            services.delivery_cancel(delivery_id=pk, reason=f"cancelled by {request.user}")
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"{cancelled} delivery(ies) cancelled.")


@admin.register(Attempt)
class AttemptAdmin(admin.ModelAdmin):
    """Every try of every delivery, browsable (read-only history)."""

    list_display = ("delivery", "number", "outcome", "response_code", "duration_ms", "retryable", "started_at")
    list_filter = ("outcome", "retryable", "delivery__destination__channel", "started_at")
    search_fields = ("=delivery__uuid", "error")
    list_select_related = ("delivery",)
    date_hierarchy = "started_at"
    readonly_fields = (
        "delivery",
        "number",
        "started_at",
        "duration_ms",
        "outcome",
        "retryable",
        "response_code",
        "response_excerpt",
        "error",
    )
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Attempt | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Attempt | None = None) -> bool:
        return False
