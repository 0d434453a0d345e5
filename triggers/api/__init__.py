"""Trigger management API (``/api/v1/triggers/``, ``/api/v1/agents/{chain}:{agent}/follow/``)."""
