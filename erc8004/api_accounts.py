"""Accounts API: registration and tokens, organizations and their members, API keys.

Thin views over ``erc8004/accounts.py``. Organizations are addressed by id in the
path; an organization the caller is not a member of does not exist for them (404).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import CharField, Count, OuterRef, QuerySet, Subquery, Value
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import exceptions, mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.views import TokenBlacklistView, TokenObtainPairView, TokenRefreshView

from . import accounts
from .access import ORGANIZATION_PARAMETERS, OrganizationScopedMixin, request_access
from .api import IdCursorPagination
from .auth import LoginIpThrottle, LoginUsernameThrottle
from .models import GRANTABLE_ROLE_CHOICES, ApiKey, Membership, Organization, Role

User = get_user_model()

#
# Serializers
#


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ("id", "username", "email", "date_joined")
        read_only_fields = fields


class RegisterSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=50)
    email = serializers.EmailField(required=False, allow_blank=True)
    password = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class OrganizationSerializer(serializers.ModelSerializer):
    my_role = serializers.CharField(read_only=True, help_text="Your role here (an API key: its role)")
    member_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Organization
        fields = ("id", "name", "slug", "is_personal", "paused", "created_at", "my_role", "member_count")
        read_only_fields = ("id", "is_personal", "paused", "created_at", "my_role", "member_count")
        extra_kwargs = {"slug": {"required": False, "validators": []}}


class MemberSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(source="user.id", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.SerializerMethodField()
    role = serializers.ChoiceField(choices=Role.choices)
    created_at = serializers.DateTimeField(read_only=True)

    def get_email(self, membership: Membership) -> str:
        """Shown to admins and owners (and to oneself); masked for everyone else."""
        email = membership.user.email or ""
        if self.context.get("show_emails") or membership.user_id == self.context.get("viewer_id"):
            return email
        name, _, domain = email.partition("@")
        return f"{name[:1]}***@{domain}" if domain else ""


class MemberAddSerializer(serializers.Serializer):
    username = serializers.CharField(required=False, help_text="Username or email of an existing account")
    email = serializers.EmailField(required=False)
    role = serializers.ChoiceField(choices=GRANTABLE_ROLE_CHOICES, default=Role.MEMBER)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("username") and not attrs.get("email"):
            raise serializers.ValidationError({"username": ["give a username or an email"]})
        return attrs


class MemberRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=GRANTABLE_ROLE_CHOICES)


class TransferSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(help_text="A current member, who becomes the owner; you become an admin")


class ApiKeySerializer(serializers.ModelSerializer):
    key_hint = serializers.SerializerMethodField(help_text="The visible part; the secret is never shown again")
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    active = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = (
            "id",
            "name",
            "prefix",
            "key_hint",
            "role",
            "organization",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "active",
        )
        read_only_fields = fields

    def get_key_hint(self, key: ApiKey) -> str:
        return f"{accounts.API_KEY_PREFIX}_{key.prefix}_…"

    def get_active(self, key: ApiKey) -> bool:
        from django.utils import timezone

        return key.revoked_at is None and (key.expires_at is None or key.expires_at > timezone.now())


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=GRANTABLE_ROLE_CHOICES, default=Role.MEMBER)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Empty = never expires")


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The full key. Shown once: store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = (*ApiKeySerializer.Meta.fields, "key")
        read_only_fields = fields


def _tokens(user) -> dict[str, str]:
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


#
# Auth
#


class RegisterView(APIView):
    """Create an account (and its personal organization); returns tokens."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [LoginIpThrottle]

    @extend_schema(
        request=RegisterSerializer,
        responses={
            201: inline_serializer(
                "Registered",
                {
                    "user": UserSerializer(),
                    "organization": OrganizationSerializer(),
                    "access": serializers.CharField(),
                    "refresh": serializers.CharField(),
                },
            )
        },
        tags=["auth"],
    )
    def post(self, request: Request) -> Response:
        from django.conf import settings

        if not settings.ACCOUNTS_REGISTRATION_OPEN:
            raise exceptions.PermissionDenied("registration is closed; ask an administrator for an account")
        data = RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = accounts.user_create(**data.validated_data)
        organization = Organization.objects.get(memberships__user=user, is_personal=True)
        organization.my_role = Role.OWNER
        organization.member_count = 1
        return Response(
            {
                "user": UserSerializer(user).data,
                "organization": OrganizationSerializer(organization).data,
                **_tokens(user),
            },
            status=status.HTTP_201_CREATED,
        )


@extend_schema(tags=["auth"])
class LoginView(TokenObtainPairView):
    """Username and password → an access token (15 min) and a refresh token (7 days).

    Throttled per client IP and per username (``THROTTLE_RATE_LOGIN``)."""

    throttle_classes = [LoginIpThrottle, LoginUsernameThrottle]


@extend_schema(tags=["auth"])
class RefreshView(TokenRefreshView):
    """A refresh token → a new access token and a new refresh token; the old refresh
    token is blacklisted (rotation: a stolen one works once at most)."""


@extend_schema(tags=["auth"])
class LogoutView(TokenBlacklistView):
    """Blacklist a refresh token (the access token expires on its own within minutes)."""


class MeView(APIView):
    """Who is calling: the user (or API key) and the organizations it can act in."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "principal": serializers.ChoiceField(choices=["user", "api_key"]),
                "user": UserSerializer(allow_null=True),
                "api_key": ApiKeySerializer(allow_null=True),
                "organizations": OrganizationSerializer(many=True),
            },
        ),
        tags=["auth"],
    )
    def get(self, request: Request) -> Response:
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        organizations = list(_organizations_for(request))
        return Response(
            {
                "principal": "api_key" if api_key else "user",
                "user": None if api_key else UserSerializer(request.user).data,
                "api_key": ApiKeySerializer(api_key).data if api_key else None,
                "organizations": OrganizationSerializer(organizations, many=True).data,
            }
        )


#
# Organizations
#


def _organizations_for(request: Request) -> QuerySet[Organization]:
    """The organizations the caller may see, each with ``my_role``."""
    qs = Organization.objects.annotate(member_count=Count("memberships"))
    if isinstance(request.auth, ApiKey):
        access = request_access(request)
        return qs.filter(pk=access.organization.pk).annotate(my_role=Value(access.role, output_field=CharField()))
    role = Membership.objects.filter(organization=OuterRef("pk"), user=request.user).values("role")[:1]
    return qs.filter(memberships__user=request.user).annotate(my_role=Subquery(role)).order_by("id")


@extend_schema_view(
    list=extend_schema(summary="Organizations you are a member of", tags=["organizations"]),
    create=extend_schema(summary="Create a shared organization (you become its owner)", tags=["organizations"]),
    retrieve=extend_schema(tags=["organizations"]),
    update=extend_schema(summary="Rename (admin+)", tags=["organizations"]),
    partial_update=extend_schema(summary="Rename (admin+)", tags=["organizations"]),
    destroy=extend_schema(summary="Delete with everything it owns (owner; not a personal one)", tags=["organizations"]),
)
class OrganizationViewSet(viewsets.ModelViewSet):
    serializer_class = OrganizationSerializer
    permission_classes = [permissions.IsAuthenticated]
    pagination_class = IdCursorPagination
    filter_backends: list = []
    queryset = Organization.objects.none()

    # The least role each action needs in the organization it targets.
    ROLES = {
        "retrieve": Role.VIEWER,
        "members": Role.VIEWER,
        "update": Role.ADMIN,
        "partial_update": Role.ADMIN,
        "pause": Role.ADMIN,
        "resume": Role.ADMIN,
        "member": Role.ADMIN,
        "transfer": Role.OWNER,
        "destroy": Role.OWNER,
    }

    def get_queryset(self) -> QuerySet[Organization]:
        if getattr(self, "swagger_fake_view", False):
            return Organization.objects.none()
        return _organizations_for(self.request)

    def get_object(self) -> Organization:
        organization = super().get_object()
        needed = self.ROLES.get(self.action, Role.VIEWER)
        if self.action in ("members", "member") and self.request.method in permissions.SAFE_METHODS:
            needed = Role.VIEWER
        if self.action == "member" and self.request.method == "DELETE":
            needed = Role.VIEWER  # leaving is allowed to anyone; removing others is checked by the service
        if not accounts.role_at_least(organization.my_role, needed):
            raise exceptions.PermissionDenied(f"this needs the {needed} role or higher; you are {organization.my_role}")
        return organization

    def _no_api_key(self, what: str) -> None:
        if isinstance(self.request.auth, ApiKey):
            raise exceptions.PermissionDenied(f"API keys cannot {what}; sign in as a person")

    def perform_create(self, serializer: OrganizationSerializer) -> None:
        self._no_api_key("create organizations")
        organization = accounts.organization_create(
            name=serializer.validated_data.get("name", ""),
            slug=serializer.validated_data.get("slug"),
            created_by=self.request.user,
        )
        serializer.instance = self.get_queryset().get(pk=organization.pk)

    def perform_update(self, serializer: OrganizationSerializer) -> None:
        accounts.organization_update(
            organization=serializer.instance,
            name=serializer.validated_data.get("name"),
            slug=serializer.validated_data.get("slug"),
        )

    def perform_destroy(self, instance: Organization) -> None:
        self._no_api_key("delete organizations")
        accounts.organization_delete(organization=instance)

    @extend_schema(request=None, responses=OrganizationSerializer, tags=["organizations"])
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Bulk pause: no trigger of this organization fires until resumed (admin+)."""
        organization = self.get_object()
        accounts.organization_pause_set(organization=organization, paused=True)
        return Response(self.get_serializer(organization).data)

    @extend_schema(request=None, responses=OrganizationSerializer, tags=["organizations"])
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Undo a pause; events indexed meanwhile are not replayed (admin+)."""
        organization = self.get_object()
        accounts.organization_pause_set(organization=organization, paused=False)
        return Response(self.get_serializer(organization).data)

    @extend_schema(request=TransferSerializer, responses=OrganizationSerializer, tags=["organizations"])
    @action(detail=True, methods=["post"])
    def transfer(self, request: Request, pk: str | None = None) -> Response:
        """Make another member the owner; you become an admin (owner only)."""
        self._no_api_key("transfer organizations")
        organization = self.get_object()
        data = TransferSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        new_owner = User.objects.filter(pk=data.validated_data["user_id"]).first()
        if new_owner is None:
            raise exceptions.ValidationError({"user_id": ["not a member of this organization; add them first"]})
        accounts.organization_transfer(organization=organization, new_owner=new_owner, by=request.user)
        return Response(self.get_serializer(self.get_queryset().get(pk=organization.pk)).data)

    def _members_context(self, organization: Organization) -> dict[str, Any]:
        return {
            "show_emails": accounts.role_at_least(organization.my_role, Role.ADMIN),
            "viewer_id": getattr(self.request.user, "pk", None),
        }

    @extend_schema(
        methods=["GET"], responses=MemberSerializer(many=True), summary="Members (viewer+)", tags=["organizations"]
    )
    @extend_schema(
        methods=["POST"],
        request=MemberAddSerializer,
        responses={201: MemberSerializer},
        summary="Add an existing account (admin+)",
        tags=["organizations"],
    )
    @action(detail=True, methods=["get", "post"])
    def members(self, request: Request, pk: str | None = None) -> Response:
        organization = self.get_object()
        if request.method == "GET":
            rows = organization.memberships.select_related("user").order_by("id")
            return Response(MemberSerializer(rows, many=True, context=self._members_context(organization)).data)
        self._no_api_key("manage members")
        if not accounts.role_at_least(organization.my_role, Role.ADMIN):
            raise exceptions.PermissionDenied("admins and owners manage members")
        data = MemberAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ref = data.validated_data.get("username") or data.validated_data.get("email")
        user = User.objects.filter(username__iexact=ref).first() or User.objects.filter(email__iexact=ref).first()
        if user is None:
            raise exceptions.ValidationError({"username": ["no account with this username or email"]})
        membership = accounts.membership_add(
            organization=organization, user=user, role=data.validated_data["role"], by=request.user
        )
        return Response(
            MemberSerializer(membership, context=self._members_context(organization)).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        methods=["PATCH"],
        request=MemberRoleSerializer,
        responses=MemberSerializer,
        summary="Change a member's role (admin+; not above your own)",
        tags=["organizations"],
    )
    @extend_schema(
        methods=["DELETE"],
        request=None,
        responses={204: None},
        summary="Remove a member (admin+), or leave (yourself)",
        tags=["organizations"],
    )
    @action(detail=True, methods=["patch", "delete"], url_path=r"members/(?P<user_id>[0-9]{1,18})")
    def member(self, request: Request, pk: str | None = None, user_id: str | None = None) -> Response:
        self._no_api_key("manage members")
        organization = self.get_object()
        membership = get_object_or_404(
            Membership.objects.select_related("user", "organization"), organization=organization, user_id=user_id
        )
        if request.method == "DELETE":
            accounts.membership_remove(membership=membership, by=request.user)
            return Response(status=status.HTTP_204_NO_CONTENT)
        data = MemberRoleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        accounts.membership_role_set(membership=membership, role=data.validated_data["role"], by=request.user)
        return Response(MemberSerializer(membership, context=self._members_context(organization)).data)


#
# API keys
#


class NoApiKeyPermission(permissions.BasePermission):
    """API keys do not manage API keys (a leaked key must not mint more)."""

    message = "API keys cannot manage API keys; sign in as a person"

    def has_permission(self, request: Request, view: Any) -> bool:
        return not isinstance(request.auth, ApiKey)


@extend_schema_view(
    list=extend_schema(summary="API keys of the organization (admin+; never the secret)", tags=["api-keys"]),
    retrieve=extend_schema(tags=["api-keys"]),
    create=extend_schema(
        summary="Create a key (admin+): the full key is in this response only",
        request=ApiKeyCreateSerializer,
        responses={201: ApiKeyCreatedSerializer},
        tags=["api-keys"],
    ),
    destroy=extend_schema(summary="Revoke (it stops working at once; the record stays)", tags=["api-keys"]),
)
@extend_schema(parameters=ORGANIZATION_PARAMETERS)
class ApiKeyViewSet(
    OrganizationScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = ApiKeySerializer
    pagination_class = IdCursorPagination
    filter_backends: list = []
    queryset = ApiKey.objects.none()
    read_role = Role.ADMIN
    write_role = Role.ADMIN

    def get_permissions(self) -> list[permissions.BasePermission]:
        return [NoApiKeyPermission(), *super().get_permissions()]

    def get_queryset(self) -> QuerySet[ApiKey]:
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.none()
        return ApiKey.objects.filter(organization=self.organization).select_related("created_by")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = ApiKeyCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, raw = accounts.api_key_create(
            organization=self.organization, created_by=self.acting_user(), **data.validated_data
        )
        key.key = raw
        return Response(ApiKeyCreatedSerializer(key).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        accounts.api_key_revoke(api_key=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=None,
        responses={201: ApiKeyCreatedSerializer, 400: OpenApiResponse(description="already revoked")},
        summary="Revoke this key and create its replacement in one step",
        tags=["api-keys"],
    )
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str | None = None) -> Response:
        key, raw = accounts.api_key_rotate(api_key=self.get_object(), by=self.acting_user())
        key.key = raw
        return Response(ApiKeyCreatedSerializer(key).data, status=status.HTTP_201_CREATED)


__all__ = (
    "ApiKeyViewSet",
    "LoginView",
    "LogoutView",
    "MeView",
    "OrganizationViewSet",
    "RefreshView",
    "RegisterView",
)
