"""A one-glance status of the pipeline (``GET /api/v1/status/``), assembled from
contributions each app registers at start-up — so this package imports no app.

Each contributor is a callable returning a dict merged into the response, e.g. the
indexing app contributes per-chain head/indexed block and the event count. ``make
run`` polls this for its live progress line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, JsonResponse

__all__ = ("status_contributor", "status_snapshot", "status_view")

logger = logging.getLogger("erc8004.status")

_CONTRIBUTORS: list[Callable[[], dict[str, Any]]] = []


def status_contributor(func: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Register a contributor (used as a decorator in an app's ``ready``-time import)."""
    if func not in _CONTRIBUTORS:
        _CONTRIBUTORS.append(func)
    return func


def status_snapshot() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for contributor in _CONTRIBUTORS:
        try:
            out.update(contributor())
        except Exception as exc:  # a broken part is reported, not fatal
            logger.warning("status contributor %s failed: %s", contributor.__qualname__, exc)
            out.setdefault("errors", []).append(f"{contributor.__module__}: {exc}")
    return out


def status_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(status_snapshot())
