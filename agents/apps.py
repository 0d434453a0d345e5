from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """The ERC-8004 read model built from indexed events, and its read API."""

    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        from . import (
            receivers,  # noqa: F401  connects the projections to indexing signals
            status,  # noqa: F401  registers the agents count in /api/v1/status/
        )
