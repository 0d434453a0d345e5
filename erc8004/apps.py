from django.apps import AppConfig


class Erc8004Config(AppConfig):
    """The project package is an app too, so it can ship management commands
    (``run``, ``healthcheck``) and templates without importing any other app."""

    name = "erc8004"
    verbose_name = "erc8004"

    def ready(self) -> None:
        from . import health  # noqa: F401  registers the core health checks and queue metrics
