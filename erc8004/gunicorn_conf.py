"""Gunicorn settings of the web process, for ``make run`` and deploy/ alike
(``gunicorn erc8004.wsgi -c python:erc8004.gunicorn_conf``). Every value can be
overridden from the environment (docs/configuration.md).

Graceful shutdown: on SIGTERM gunicorn closes its listening socket at once (no new
connections: the load balancer's health probe fails and it stops sending), lets
each worker finish the requests it has for up to ``graceful_timeout`` seconds, then
exits. Nothing the API does is lost if a request is cut: every write is one
database transaction, and the work it starts is a row first (the outbox).
"""

from __future__ import annotations

import multiprocessing
import os

from erc8004.logs import logging_config

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# The API is I/O bound (PostgreSQL, Redis): two processes per core, a few threads
# each, absorbs slow clients without a worker per connection.
workers = int(os.environ.get("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count()))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
# Longer than the slowest legitimate request (a large filtered list), shorter than a
# client's patience; a stuck worker is replaced after it.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 60))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 30))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 5))
# A worker is replaced after this many requests (+ jitter), bounding slow leaks.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 10000))
max_requests_jitter = max_requests // 10
# django-structlog writes one structured line per request (with its request id):
# gunicorn's own access log would duplicate it.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
errorlog = "-"
# Gunicorn's own lines (booting, signals, worker timeouts) in the same format as
# everything else (LOG_FORMAT; erc8004/logs.py): the master loads no Django settings.
_env = os.environ.get("ERC8004_ENV", "development")
logconfig_dict = logging_config(
    fmt=os.environ.get("LOG_FORMAT") or ("json" if _env == "production" else "plain"),
    level=os.environ.get("LOG_LEVEL", "INFO"),
)
# Gunicorn merges this with its defaults, whose loggers have their own handlers; its
# access lines only when GUNICORN_ACCESSLOG asks for them (see accesslog above).
logconfig_dict["loggers"]["gunicorn.error"] = {"handlers": ["console"], "level": "INFO", "propagate": False}
logconfig_dict["loggers"]["gunicorn.access"] = {
    "handlers": ["console"] if accesslog else [],
    "level": "INFO",
    "propagate": False,
}
# Gunicorn 27's control socket defaults to one path per user (~/.gunicorn): two
# servers on one host (two checkouts, a test beside make run) would fight over it.
# We manage the process with signals, so it stays off unless a path is given.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
# Behind a proxy that terminates TLS, trust its X-Forwarded-* only from these.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")


def child_exit(server, worker) -> None:
    """prometheus_client multiprocess mode: a dead worker's live gauges must go."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
