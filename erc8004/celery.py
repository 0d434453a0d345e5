"""The Celery application.

Configuration lives in Django settings under the ``CELERY_`` namespace (see
``erc8004/settings.py``); this module only creates the app and discovers tasks.
"""

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "erc8004.settings")

app = Celery("erc8004")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _recycle_db_connections(**kwargs: Any) -> None:
    """Django's per-request connection rule, per task: keep the thread's connection
    (CELERY_DB_REUSE_MAX stops Celery closing it every time) unless it is older than
    CONN_MAX_AGE or saw an error."""
    from django.db import close_old_connections

    close_old_connections()
