"""Test-only URLs: the project's URLs plus a one-time login link, so a headless
browser (which cannot be handed a session cookie on its command line) arrives
logged in. Used by tests/triggers/test_admin_screenshots.py through
``@pytest.mark.urls``; never part of the served URLconf."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model, login
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, HttpResponseRedirect
from django.urls import path
from django.utils.http import url_has_allowed_host_and_scheme

from erc8004.urls import urlpatterns as project_urlpatterns

_TOKENS: dict[str, int] = {}


def login_link(user, next_path: str) -> str:
    """A path that logs ``user`` in once, then redirects to ``next_path``."""
    token = secrets.token_urlsafe(24)
    _TOKENS[token] = user.pk
    return f"/__test__/login/{token}/?next={next_path}"


def one_time_login(request: HttpRequest, token: str) -> HttpResponse:
    user_id = _TOKENS.pop(token, None)
    if user_id is None:
        return HttpResponseNotFound("unknown or used token")
    user = get_user_model().objects.get(pk=user_id)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    next_path = request.GET.get("next", "/admin/")
    if not url_has_allowed_host_and_scheme(next_path, allowed_hosts={request.get_host()}):
        next_path = "/admin/"
    return HttpResponseRedirect(next_path)


urlpatterns = [path("__test__/login/<str:token>/", one_time_login), *project_urlpatterns]
