"""The demo: a local federation on loopback that trains a forecaster under contracts.

``hanse demo`` starts a researcher node (the aggregator) and several city nodes as
real processes, negotiates a training contract with each city (agreed, countered,
refused), trains a next-hour forecaster with differential privacy under the
agreements, compares it with each city alone and all data pooled, checks budgets
and audit logs on every node, and writes a report with plots.
"""

from __future__ import annotations

from node.demo.options import DemoOptionError, DemoOptions
from node.demo.run import run_demo

__all__ = ["DemoOptionError", "DemoOptions", "run_demo"]
