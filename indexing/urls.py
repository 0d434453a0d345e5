"""Indexing API routes, mounted under /api/v1/ (erc8004/urls.py)."""

from django.urls import path

from . import api

urlpatterns = [
    path("chains/", api.ChainListApi.as_view(), name="chain-list"),
    path("chains/<int:chain_id>/", api.ChainDetailApi.as_view(), name="chain-detail"),
]
