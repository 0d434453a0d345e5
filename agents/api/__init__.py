"""The public, explorer-grade read API of the agents read model (docs/api.md).

``selectors`` resolve ids and build querysets, ``filters`` turn query parameters into
filters (bad values are 400s with field errors), ``serializers`` shape responses,
``views`` wire them together thinly; routes are in ``agents/urls.py``.
"""
