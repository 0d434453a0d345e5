"""Root URLs. Apps are included by dotted string, so this package imports none of them."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from .status import status_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/v1/status/", status_view, name="status"),
    path("api/v1/", include("indexing.urls")),
    path("api/v1/", include("agents.urls")),
    # Accounts and trigger management (issue 5; docs/triggers-api.md).
    path("api/v1/", include("erc8004.api_urls")),
    path("api/v1/", include("triggers.api.urls")),
    path("api/v1/", include("actions.api.urls")),
    path("api-auth/", include("rest_framework.urls")),  # browsable API login/logout (session)
    path("", include("django_prometheus.urls")),
]
