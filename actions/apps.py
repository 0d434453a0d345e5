from django.apps import AppConfig


class ActionsConfig(AppConfig):
    """Destinations (Telegram chats, webhook endpoints, MCP servers), the delivery
    outbox and its attempts, channels, templates and the retry policy."""

    name = "actions"
    verbose_name = "Actions"

    def ready(self) -> None:
        from . import status  # noqa: F401  registers status, health and metrics contributions
