"""Routes of the accounts API (included under /api/v1/ by the root URLconf)."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from .api_accounts import (
    ApiKeyViewSet,
    LoginView,
    LogoutView,
    MeView,
    OrganizationViewSet,
    RefreshView,
    RegisterView,
)

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("organizations", OrganizationViewSet, basename="organization")
router.register("api-keys", ApiKeyViewSet, basename="api-key")

urlpatterns = [
    path("auth/register/", RegisterView.as_view(), name="auth-register"),
    path("auth/login/", LoginView.as_view(), name="auth-login"),
    path("auth/refresh/", RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout/", LogoutView.as_view(), name="auth-logout"),
    path("auth/me/", MeView.as_view(), name="auth-me"),
    *router.urls,
]
