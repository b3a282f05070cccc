"""Hanse data-space core: identity, catalog, stores, wire services.

``connector`` never imports Flower or process management; it is usable on its own
as a dataspace connector. Generated wire code lives in :mod:`connector.v1`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
