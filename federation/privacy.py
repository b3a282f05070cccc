"""Privacy accounting: what epsilon a dataset has spent, and would spend with one more round.

Every round of DP-SGD a node runs on a dataset is one :class:`DPStep`: so many noisy
optimizer steps at a sample rate and a noise multiplier. Rounds compose, whatever
agreement or run they belong to, so the epsilon of a dataset is that of *all* its
steps together. :func:`epsilon_after` computes it with the Rényi-DP accountant of
Opacus (the accountant :func:`federation.training.fit` trains under), from the steps
alone: no training is needed, so the guard can ask *before* a round what epsilon the
round would bring the dataset to, and refuse it if that exceeds the budget.

The result is deterministic: the same steps and delta always give the same epsilon.

Opacus is imported on the first computation, not with this module: the guard
imports it in every message's process, and an evaluate message never accounts
(importing Opacus costs about 2 s of CPU).
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Sequence
from types import ModuleType
from typing import NamedTuple

import numpy as np


class DPStep(NamedTuple):
    """One round of DP-SGD on a dataset, as the accountant sees it."""

    sample_rate: float
    """Probability that an example is in a batch (Poisson sampling), in ``(0, 1]``."""
    noise_multiplier: float
    """Noise standard deviation over the clipping norm; greater than 0."""
    steps: int
    """Noisy optimizer steps taken in the round; 0 or more."""


def epsilon_after(history: Sequence[DPStep], new: DPStep | None, delta: float) -> float:
    """The epsilon of a dataset after ``history`` and then ``new``, at ``delta``.

    The steps compose under Rényi differential privacy, at the orders of Opacus'
    ``RDPAccountant``, then convert to an (epsilon, delta) guarantee exactly as
    that accountant does. Rounds with the same sample rate and noise multiplier are
    one mechanism repeated, whose RDP is linear in the steps; each such mechanism's
    per-step RDP is computed once (and cached), so a long ledger stays cheap.

    Args:
        history: Every round already spent on the dataset, in any order.
        new: The round about to be spent, or ``None`` for the epsilon spent so far.
        delta: The delta of the guarantee, in ``(0, 1)``.

    Returns:
        Epsilon, 0.0 when no step was ever taken.

    Raises:
        ValueError: ``delta`` is outside ``(0, 1)``, or a step has a sample rate
            outside ``(0, 1]``, a noise multiplier that is not positive, or a negative
            number of steps; the message names the step.
    """
    if not (isinstance(delta, int | float) and 0.0 < delta < 1.0):
        raise ValueError(f"delta must be in (0, 1), not {delta!r}; agreements use e.g. 1e-5")
    steps = [*history, *([] if new is None else [new])]
    mechanisms: dict[tuple[float, float], int] = {}
    for index, step in enumerate(steps):
        _check_step(step, "the new round" if new is not None and index == len(history) else index)
        if step.steps > 0:
            key = (float(step.sample_rate), float(step.noise_multiplier))
            mechanisms[key] = mechanisms.get(key, 0) + int(step.steps)
    if not mechanisms:
        return 0.0
    orders = _orders()
    rdp = sum(
        (_rdp_per_step(rate, noise) * count for (rate, noise), count in mechanisms.items()),
        start=np.zeros(len(orders)),
    )
    epsilon, _ = _rdp_analysis().get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    return float(epsilon)


@functools.cache
def _orders() -> list[float]:
    """The RDP orders of Opacus' ``RDPAccountant`` (Opacus is imported on first use)."""
    from opacus.accountants import RDPAccountant

    return [float(order) for order in RDPAccountant.DEFAULT_ALPHAS]


def _rdp_analysis() -> ModuleType:
    """Opacus' RDP analysis module, imported on first use."""
    return importlib.import_module("opacus.accountants.analysis.rdp")


@functools.lru_cache(maxsize=256)
def _rdp_per_step(sample_rate: float, noise_multiplier: float) -> np.ndarray:
    rdp: np.ndarray = _rdp_analysis().compute_rdp(
        q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=_orders()
    )
    rdp.setflags(write=False)
    return rdp


def _check_step(step: DPStep, where: int | str) -> None:
    name = where if isinstance(where, str) else f"history[{where}]"
    sample_rate, noise_multiplier, steps = step
    if not (isinstance(sample_rate, int | float) and 0.0 < sample_rate <= 1.0):
        raise ValueError(f"{name}: sample_rate must be in (0, 1], not {sample_rate!r}")
    if not (
        isinstance(noise_multiplier, int | float)
        and math.isfinite(noise_multiplier)
        and noise_multiplier > 0.0
    ):
        raise ValueError(
            f"{name}: noise_multiplier must be a finite number above 0, not {noise_multiplier!r}"
            " (without noise there is no privacy guarantee to account)"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{name}: steps must be a whole number 0 or more, not {steps!r}")
