"""Admin: triggers with their actions inline, validated by the same service calls as
the API (``trigger_validate`` in the form's ``clean()``, ``trigger_actions_validate``
in the inline formset's, ``trigger_create`` / ``trigger_update`` to save) — one path,
not two. Admin actions: enable, disable, dry run (results on an intermediate page).
Matches are browsable, never editable."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from indexing.models import Registry

from .conditions import EVENT_TYPES
from .models import Match, Trigger, TriggerAction
from .services import (
    ActionSpec,
    trigger_actions_validate,
    trigger_create,
    trigger_dry_run,
    trigger_update,
    trigger_validate,
    trigger_watched_events,
)

_POLICY = (
    "cooldown_seconds",
    "max_fires",
    "max_fires_window_seconds",
    "fire_on_backfill",
    "confirmation_mode",
    "confirmations",
)


class PrettyJSONField(forms.JSONField):
    """JSON shown indented, in a monospace box a person can edit."""

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class ChainIdsField(forms.CharField):
    """Comma-separated chain ids. Anything that is not a number is passed on as it
    is, so the service's validation (the same as the API's) says what is wrong."""

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return value or ""

    def to_python(self, value: Any) -> list[Any]:
        text = super().to_python(value) or ""
        items = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
        return [int(i) if i.isdigit() and len(i) <= 18 else i for i in items]


class TriggerForm(forms.ModelForm):
    chain_ids = ChainIdsField(required=False, help_text="Comma-separated chain ids; empty = every chain")
    registries = forms.MultipleChoiceField(
        choices=Registry.choices, required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked = all"
    )
    event_types = forms.MultipleChoiceField(
        choices=[(t, t) for t in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked = every event type",
    )
    conditions = PrettyJSONField(
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 14, "cols": 90, "class": "vLargeTextField", "style": "font-family: monospace"}
        ),
        help_text='Condition tree, e.g. {"all": [{"type": "value_threshold", "op": "lt", "value": 50}]}; '
        "empty = every event. Grammar: docs/triggers-api.md.",
    )

    class Meta:
        model = Trigger
        fields = (
            "organization",
            "name",
            "description",
            "enabled",
            "chain_ids",
            "registries",
            "event_types",
            "conditions",
            *_POLICY,
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["conditions"] = data.get("conditions") or {}
        for name in ("chain_ids", "registries", "event_types"):
            data[name] = list(data.get(name) or [])
        try:
            trigger_validate(
                chain_ids=data.get("chain_ids") or [],
                registries=data.get("registries") or [],
                event_types=data.get("event_types") or [],
                conditions=data.get("conditions") or {},
                confirmation_mode=data.get("confirmation_mode") or Trigger.Confirmation.INSTANT,
                confirmations=data.get("confirmations") or 0,
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return data


class TriggerActionFormSet(forms.BaseInlineFormSet):
    """Checks the actions with the service (destination of the trigger's own
    organization, template syntax for the channel) before anything is saved."""

    def action_forms(self) -> list[forms.Form]:
        kept = [
            f
            for f in self.forms
            if getattr(f, "cleaned_data", None)
            and not f.cleaned_data.get("DELETE")
            and f.cleaned_data.get("destination")
        ]
        return sorted(kept, key=lambda f: (f.cleaned_data.get("position") or 0, self.forms.index(f)))

    def clean(self) -> None:
        super().clean()
        if any(self.errors) or self.instance.organization_id is None:
            return
        ordered = self.action_forms()
        specs = [
            ActionSpec(
                destination=f.cleaned_data["destination"],
                template=f.cleaned_data.get("template") or "",
                enabled=f.cleaned_data.get("enabled", True),
            )
            for f in ordered
        ]
        try:
            trigger_actions_validate(organization_id=self.instance.organization_id, actions=specs)
        except ValidationError as exc:
            for message in exc.message_dict.get("actions", []):
                index, _, rest = message.partition("].")
                field, _, why = rest.partition(": ")
                form = ordered[int(index.removeprefix("actions["))]
                form.add_error(field if field in form.fields else None, why or message)


class TriggerActionInline(admin.TabularInline):
    model = TriggerAction
    formset = TriggerActionFormSet
    extra = 1
    fields = ("position", "destination", "template", "enabled")
    autocomplete_fields = ("destination",)
    verbose_name = "action"
    verbose_name_plural = "actions (where to send, and the message template for each)"
    formfield_overrides = {
        TriggerAction._meta.get_field("template").__class__: {
            "widget": forms.Textarea(attrs={"rows": 3, "cols": 60, "style": "font-family: monospace"})
        }
    }


def _pretty_payload(payload: dict[str, Any]) -> str:
    """A payload as a person reads it: a webhook's JSON body shown as JSON, not as
    the escaped string it is sent as."""
    shown = dict(payload)
    body = shown.get("body")
    if isinstance(body, str):
        with contextlib.suppress(ValueError):
            shown["body"] = json.loads(body)
    return json.dumps(shown, indent=2, ensure_ascii=False)


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin):
    form = TriggerForm
    inlines = (TriggerActionInline,)
    list_display = (
        "name",
        "organization",
        "enabled",
        "watches",
        "action_count",
        "fire_count",
        "last_fired_at",
        "updated_at",
    )
    list_display_links = ("name",)
    list_filter = ("enabled", "confirmation_mode", "fire_on_backfill", "organization", "updated_at")
    search_fields = ("name", "description", "organization__name", "organization__slug")
    list_select_related = ("organization",)
    readonly_fields = ("fire_count", "last_fired_at", "created_by", "created_at", "updated_at", "deliveries_link")
    actions = ("enable", "disable", "dry_run")
    save_on_top = True
    fieldsets = (
        (None, {"fields": (("name", "enabled"), ("organization", "description"))}),
        ("What to watch", {"fields": ("chain_ids", "registries", "event_types")}),
        ("Conditions", {"fields": ("conditions",)}),
        (
            "Notification policy",
            {"fields": _POLICY, "classes": ("collapse",), "description": "How often, and how confirmed."},
        ),
        (
            "Bookkeeping",
            {"fields": ("fire_count", "last_fired_at", "deliveries_link", "created_by", "created_at", "updated_at")},
        ),
    )

    class Media:
        css = {"all": ("triggers/admin.css",)}

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "description":
            kwargs["widget"] = forms.Textarea(attrs={"rows": 2, "cols": 60})
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Trigger]:
        return super().get_queryset(request).annotate(_action_count=Count("actions"))

    @admin.display(description="watches")
    def watches(self, obj: Trigger) -> str:
        chains = ", ".join(str(c) for c in obj.chain_ids) or "every chain"
        types = ", ".join(obj.event_types) or ", ".join(obj.registries) or "every event"
        return f"{types} on {chains}"

    @admin.display(description="actions", ordering="_action_count")
    def action_count(self, obj: Trigger) -> int:
        return obj._action_count

    @admin.display(description="deliveries")
    def deliveries_link(self, obj: Trigger) -> str:
        if not obj.pk:
            return "—"
        url = reverse("admin:actions_delivery_changelist") + f"?trigger_id={obj.pk}"
        return format_html('<a href="{}">Deliveries of this trigger →</a>', url)

    def save_model(self, request: HttpRequest, obj: Trigger, form: TriggerForm, change: bool) -> None:
        """Through the service: the same validation and candidate keys as the API."""
        fields = {name: form.cleaned_data.get(name) for name in form.Meta.fields if name in form.cleaned_data}
        fields.pop("organization", None)
        if change:
            trigger_update(trigger=obj, **fields)
        else:
            created = trigger_create(organization=obj.organization, created_by=request.user, **fields)
            obj.pk = created.pk
            obj.created_at, obj.updated_at = created.created_at, created.updated_at

    def save_related(self, request: HttpRequest, form: TriggerForm, formsets: list, change: bool) -> None:
        """The inline's rows become ``ActionSpec``s saved by ``trigger_update`` (which
        replaces the trigger's actions and rebuilds its candidate keys)."""
        for formset in formsets:
            if isinstance(formset, TriggerActionFormSet):
                specs = [
                    ActionSpec(
                        destination=f.cleaned_data["destination"],
                        template=f.cleaned_data.get("template") or "",
                        enabled=f.cleaned_data.get("enabled", True),
                    )
                    for f in formset.action_forms()
                ]
                trigger_update(trigger=form.instance, actions=specs)
                formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    @admin.action(description="Enable selected triggers")
    def enable(self, request: HttpRequest, queryset: QuerySet[Trigger]) -> None:
        for trigger in queryset:
            trigger_update(trigger=trigger, enabled=True)
        self.message_user(request, f"{queryset.count()} trigger(s) enabled.", messages.SUCCESS)

    @admin.action(description="Disable selected triggers")
    def disable(self, request: HttpRequest, queryset: QuerySet[Trigger]) -> None:
        for trigger in queryset:
            trigger_update(trigger=trigger, enabled=False)
        self.message_user(request, f"{queryset.count()} trigger(s) disabled.", messages.SUCCESS)

    @admin.action(description="Dry run against the last 20 watched events (nothing is sent)")
    def dry_run(self, request: HttpRequest, queryset: QuerySet[Trigger]) -> HttpResponse:
        runs = []
        for trigger in queryset.select_related("organization")[:10]:
            results = trigger_dry_run(trigger=trigger, events=trigger_watched_events(trigger=trigger, limit=20))
            for result in results:
                for message in result.messages:
                    if "payload" in message:
                        message["pretty"] = _pretty_payload(message["payload"])
            runs.append({"trigger": trigger, "results": results, "matched": sum(1 for r in results if r.matched)})
        context = {
            **self.admin_site.each_context(request),
            "title": "Dry run",
            "opts": self.model._meta,
            "runs": runs,
        }
        return TemplateResponse(request, "admin/triggers/trigger/dry_run.html", context)


@admin.register(Match)
class MatchAdmin(admin.ModelAdmin):
    list_display = ("id", "trigger", "event", "status", "reason", "delivery_links", "created_at")
    list_filter = ("status", "created_at")
    search_fields = ("=trigger__id", "trigger__name", "=event__id")
    list_select_related = ("trigger", "event")
    readonly_fields = ("trigger", "event", "status", "reason", "created_at", "retracted_at", "delivery_links")
    fields = readonly_fields
    date_hierarchy = "created_at"

    @admin.display(description="deliveries")
    def delivery_links(self, obj: Match) -> str:
        return format_html_join(
            ", ",
            '<a href="{}">{}</a>',
            ((reverse("admin:actions_delivery_change", args=[d.pk]), d.status) for d in obj.deliveries.all()),
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Match | None = None) -> bool:
        return False
