"""Indexing API routes (chains status lives under /api/v1/chains/, added by the read API)."""

urlpatterns: list = []
