"""Root URLs. Apps are included by dotted string, so this package imports none of them."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from .health import health_view
from .metrics import metrics_view
from .status import status_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/v1/status/", status_view, name="status"),
    # Operations (issue 6): health for probes and scripts, metrics for Prometheus.
    path("api/v1/health", health_view, name="health"),
    path("api/v1/health/", health_view),
    path("api/v1/", include("indexing.urls")),
    path("api/v1/", include("agents.urls")),
    # Accounts and trigger management (issue 5; docs/triggers-api.md).
    path("api/v1/", include("erc8004.api_urls")),
    path("api/v1/", include("triggers.api.urls")),
    path("api/v1/", include("actions.api.urls")),
    path("api-auth/", include("rest_framework.urls")),  # browsable API login/logout (session)
    path("metrics", metrics_view, name="metrics"),
]
if settings.SERVE_STATIC:
    # The admin's CSS/JS without a reverse proxy (make run, small deployments):
    # collectstatic fills STATIC_ROOT; Django's static() helper only works with DEBUG.
    urlpatterns.append(re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT}))
