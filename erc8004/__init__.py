"""Project package: settings, the Celery app, root URLs and shared helpers.

Importing the Celery app here makes ``@shared_task`` bind to it in every process
(Django, workers, beat), so no app ever imports this package's Celery module.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
