"""The Celery application.

Configuration lives in Django settings under the ``CELERY_`` namespace (see
``erc8004/settings.py``); this module only creates the app and discovers tasks.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "erc8004.settings")

app = Celery("erc8004")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
