"""Logging for every process (web, workers, beat, commands): one configuration,
two renderings, ids bound where the code knows them.

Why structlog + django-structlog (both pinned in requirements/base.in) and not
python-json-logger: the ids we want on a log line (``chain_id``, ``event_id``,
``trigger_id``, ``delivery``, ``request_id``, ``task_id``) are known several calls
above the line that logs. structlog keeps them in context variables
(:func:`log_context`) and merges them into *every* record — including those of
plain ``logging.getLogger("erc8004.…")`` loggers and of libraries — through one
``ProcessorFormatter``; django-structlog binds the request id per request and
carries it into the Celery tasks the request enqueues. python-json-logger only
formats records, so that plumbing would be ours to write.

``LOG_FORMAT=json`` (the default in production) writes one JSON object per line::

    {"event": "delivery failed", "level": "warning", "logger": "erc8004.actions.services",
     "timestamp": "2026-…Z", "delivery": "6f0c…", "trigger_id": 4, "event_id": 812, …}

``LOG_FORMAT=plain`` (the default elsewhere, e.g. ``make run``) prints the same
record for people: time, level, logger, message, then ``key=value`` pairs.

Logger names are hierarchical under ``erc8004.`` (``erc8004.indexing.poller``,
``erc8004.actions.services``…), so one ``LOGGING["loggers"]["erc8004.actions"]``
entry tunes a whole room.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

__all__ = (
    "REQUEST_ID_HEADER",
    "RequestIdMiddleware",
    "log_context",
    "logging_config",
    "process_role",
    "structlog_configure",
)

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's request id is kept when it looks like an id (a UUID, a load balancer's
# trace id, ...): short, and without characters that could forge log lines or headers.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}$")


def process_role(argv: list[str]) -> str:
    """What this process is, from its command line: ``web`` (gunicorn), ``beat``,
    ``flower``, ``worker-<queue>``, or the management command (``migrate``,
    ``healthcheck``…). Used to name database connections (settings)."""
    if not argv:
        return "erc8004"
    program = Path(argv[0]).name
    if "gunicorn" in program:
        return "erc8004-web"
    if "celery" in program:
        for role in ("beat", "flower"):
            if role in argv:
                return f"erc8004-{role}"
        if "-Q" in argv[:-1]:
            return "erc8004-worker-" + argv[argv.index("-Q") + 1]
        return "erc8004-worker"
    if program == "manage.py" and len(argv) > 1:
        return f"erc8004-{argv[1]}"
    return f"erc8004-{program}"


def _shared_processors() -> list[Callable[..., Any]]:
    """What every record gets, from structlog or from the stdlib ``logging`` module."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def logging_config(*, fmt: str, level: str, task_events: bool = False) -> dict[str, Any]:
    """The ``LOGGING`` dict: every record goes through structlog's ProcessorFormatter,
    rendered as JSON or as a readable line (``fmt``: ``json`` | ``plain``)."""
    if fmt not in ("json", "plain"):
        raise ValueError(f"LOG_FORMAT must be json or plain, not {fmt!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=40)
    )
    final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)
    # Celery's one-line-per-task records ("Task … received", "… succeeded in 0.01s")
    # and django-structlog's task_* events are one or two lines per delivery; Flower
    # and the metrics already count tasks, so they are kept only when asked for.
    task_level = "INFO" if task_events else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": final,
                "foreign_pre_chain": [*_shared_processors(), structlog.stdlib.ExtraAdder()],
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "INFO"},
            # httpx2/httpcore2 log every request URL at INFO/DEBUG; a Telegram URL carries
            # the bot token in its path, so these stay at WARNING whatever LOG_LEVEL says.
            "httpx2": {"level": "WARNING"},
            "httpcore2": {"level": "WARNING"},
            "celery.app.trace": {"level": task_level},
            "celery.worker.strategy": {"level": task_level},
            "celery.beat": {"level": task_level},  # "Sending due task …", several a second
            # "…/.env not found": the environment is the configuration in production.
            "environ.environ": {"level": "WARNING"},
            "django_structlog.celery": {"level": task_level},
            # One line per request with its status and the request id is the access log;
            # "request_started" duplicates it.
            "django_structlog.middlewares": {"level": "INFO"},
        },
    }


def structlog_configure() -> None:
    """Make ``structlog.get_logger()`` loggers hand their records to ``logging`` (so
    one handler and one formatter serve both kinds). Idempotent."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Bind ids to every log line written inside the block, whichever logger writes
    it (``with log_context(chain_id=1): …``). ``None`` values are left out."""
    with structlog.contextvars.bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield


class RequestIdMiddleware:
    """Give every request an id, and every response an ``X-Request-ID`` header.

    A sane incoming ``X-Request-ID`` (a load balancer's, a client's) is kept, so one
    id follows a request across hops; anything else is replaced by a new UUID before
    django-structlog's ``RequestMiddleware`` (next in ``MIDDLEWARE``, trusting the
    header) binds it to the request's log lines and to the tasks it enqueues.
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SANE_REQUEST_ID.match(incoming) else str(uuid.uuid4())
        request.META["HTTP_X_REQUEST_ID"] = request_id
        request.request_id = request_id
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response
