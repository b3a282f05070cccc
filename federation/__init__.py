"""Flower integration for Hanse: governed training under usage contracts.

Imports :mod:`connector`, never the reverse. The guard mods, the governed ClientApp
runner, tasks and the privacy ledger arrive with the governed-training work.
"""

__all__: list[str] = []
