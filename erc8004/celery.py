"""The Celery application.

Configuration lives in Django settings under the ``CELERY_`` namespace (see
``erc8004/settings.py``); this module only creates the app and discovers tasks.
"""

import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun
from django_structlog.celery.steps import DjangoStructLogInitStep

from .broker import install as _install_broker_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "erc8004.settings")
# redis:// and rediss:// use our Redis transport (a worker survives losing its broker).
_install_broker_transport()

app = Celery("erc8004")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Binds each task's id (and the request id of the web request that enqueued it) to
# the task's log lines (erc8004/logs.py).
app.steps["worker"].add(DjangoStructLogInitStep)


@setup_logging.connect
def _use_django_logging(**kwargs: Any) -> None:
    """Celery configures logging itself unless someone answers this signal; Django has
    already applied ``settings.LOGGING`` (JSON or plain, erc8004/logs.py), and the
    worker must write the same records as the web process."""


@task_prerun.connect
@task_postrun.connect
def _recycle_db_connections(**kwargs: Any) -> None:
    """Django's per-request connection rule, per task: keep the thread's connection
    (CELERY_DB_REUSE_MAX stops Celery closing it every time) unless it is older than
    CONN_MAX_AGE or saw an error."""
    from django.db import close_old_connections

    close_old_connections()
