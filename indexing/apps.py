from django.apps import AppConfig


class IndexingConfig(AppConfig):
    """Chain ingestion: chains, RPC endpoints, deployments, the reorg-safe poller and
    the stored decoded log (ChainEvent). Floor 1: imports only ``erc8004`` helpers."""

    name = "indexing"
    verbose_name = "Indexing"

    def ready(self) -> None:
        from . import status  # noqa: F401  registers status, health and metrics contributions
