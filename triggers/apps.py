from django.apps import AppConfig


class TriggersConfig(AppConfig):
    """Triggers, conditions, per-trigger state and matches: the orchestrator on floor 3."""

    name = "triggers"
    verbose_name = "Triggers"

    def ready(self) -> None:
        from . import (
            receivers,  # noqa: F401  evaluates what the indexer commits
            status,  # noqa: F401  registers status, health and metrics contributions
        )
