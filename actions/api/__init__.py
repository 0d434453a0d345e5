"""Destinations and deliveries API (``/api/v1/destinations/``, ``/api/v1/deliveries/``)."""
