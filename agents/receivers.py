"""Receivers of indexing signals (listed in indexing/signals.py)."""
