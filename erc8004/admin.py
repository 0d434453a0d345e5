"""Admin: organizations (members inline, bulk pause), memberships, API keys (the
key is shown once, in a message, when created here; never again). Thin: changes go
through ``erc8004/accounts.py``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from . import accounts
from .models import GRANTABLE_ROLE_CHOICES, ApiKey, Membership, Organization

admin.site.site_header = "erc8004 administration"
admin.site.site_title = "erc8004 admin"
admin.site.index_title = "Triggers, destinations, deliveries and the chains they watch"
# The app list is one click away (Home); pages get the full width for their content.
admin.site.enable_nav_sidebar = False


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("name", "prefix", "role", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # created on their own page, where the key is shown once


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "is_personal", "paused", "member_count", "created_at")
    list_filter = ("is_personal", "paused")
    search_fields = ("name", "slug", "memberships__user__username")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at",)
    inlines = (MembershipInline, ApiKeyInline)
    actions = ("pause", "resume")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        return super().get_queryset(request).annotate(_members=Count("memberships", distinct=True))

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj: Organization) -> int:
        return obj._members

    @admin.action(description="Pause: no trigger of the organization fires")
    def pause(self, request: HttpRequest, queryset: QuerySet[Organization]) -> None:
        for organization in queryset:
            accounts.organization_pause_set(organization=organization, paused=True)
        self.message_user(request, f"{queryset.count()} organization(s) paused.", messages.SUCCESS)

    @admin.action(description="Resume")
    def resume(self, request: HttpRequest, queryset: QuerySet[Organization]) -> None:
        for organization in queryset:
            accounts.organization_pause_set(organization=organization, paused=False)
        self.message_user(request, f"{queryset.count()} organization(s) resumed.", messages.SUCCESS)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__username", "user__email", "organization__name", "organization__slug")
    list_select_related = ("user", "organization")
    autocomplete_fields = ("user", "organization")


class ApiKeyForm(forms.ModelForm):
    role = forms.ChoiceField(choices=GRANTABLE_ROLE_CHOICES, initial="member", help_text="The most this key may do")

    class Meta:
        model = ApiKey
        fields = ("organization", "name", "role", "expires_at")

    def clean_expires_at(self) -> Any:
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("must be in the future")
        return expires_at


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ("name", "key_hint", "organization", "role", "state", "expires_at", "last_used_at", "created_by")
    list_filter = ("role", "organization", "revoked_at")
    search_fields = ("name", "prefix", "organization__name")
    list_select_related = ("organization", "created_by")
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return (
            "organization",
            "name",
            "role",
            "key_hint",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        )

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("organization", "name", "role", "expires_at")
        return self.get_readonly_fields(request, obj)

    @admin.display(description="key")
    def key_hint(self, obj: ApiKey) -> str:
        return f"{accounts.API_KEY_PREFIX}_{obj.prefix}_…"

    @admin.display(description="state")
    def state(self, obj: ApiKey) -> str:
        if obj.revoked_at:
            return "revoked"
        if obj.expires_at and obj.expires_at <= timezone.now():
            return "expired"
        return "active"

    def has_change_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        return obj is None  # keys are revoked and recreated, not edited

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ApiKeyForm, change: bool) -> None:
        """Created through the service; the key is shown once, here."""
        is_member = Membership.objects.filter(organization=obj.organization, user=request.user).exists()
        key, raw = accounts.api_key_create(
            organization=obj.organization,
            name=obj.name,
            role=obj.role,
            expires_at=obj.expires_at,
            created_by=request.user if is_member else None,
        )
        obj.pk = key.pk
        obj.prefix, obj.created_at = key.prefix, key.created_at
        messages.warning(request, f"The API key (shown once, copy it now): {raw}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            accounts.api_key_revoke(api_key=key)
        self.message_user(request, f"{queryset.count()} key(s) revoked.", messages.SUCCESS)
