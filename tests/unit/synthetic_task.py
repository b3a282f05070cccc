"""A tiny training task on synthetic data, for the training, privacy and guard tests.

It implements :class:`federation.tasks.base.Task` the way an installed task would:
a linear model, a mean-squared-error loss, and two declared metrics.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import cast

import torch
from torch.utils.data import Dataset, TensorDataset

from federation.tasks.base import SeriesSource, TaskData

FEATURES = 4

Examples = Dataset[tuple[torch.Tensor, torch.Tensor]]


class LinearTask:
    """y = x . w + noise, learned by a linear model (MSE loss)."""

    id = "synthetic-linear"
    version = "1"
    metrics: tuple[str, ...] = ("mae", "mse")

    def content_hash(self) -> str:
        return "sha256:" + hashlib.sha256(f"{self.id}@{self.version}".encode()).hexdigest()

    def build_model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Linear(FEATURES, 1)

    def load(self, source: SeriesSource) -> TaskData:
        raise NotImplementedError("the synthetic task makes its data with synthetic_data()")

    def loss(
        self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        features, target = batch
        return torch.nn.functional.mse_loss(model(features).squeeze(-1), target)

    def evaluate(
        self, model: torch.nn.Module, data: Dataset[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        assert isinstance(data, TensorDataset)
        features, target = data.tensors
        with torch.no_grad():
            predicted = model(features).squeeze(-1)
        return {
            "mae": float((predicted - target).abs().mean()),
            "mse": float(((predicted - target) ** 2).mean()),
        }


def synthetic_data(train: int = 64, test: int = 16, seed: int = 7) -> TaskData:
    """A dataset of ``train`` + ``test`` examples of a fixed linear relation."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.tensor([1.5, -2.0, 0.5, 3.0])
    features = torch.randn(train + test, FEATURES, generator=generator)
    target = features @ weights + 0.1 * torch.randn(train + test, generator=generator)
    return TaskData(
        train=cast(Examples, TensorDataset(features[:train], target[:train])),
        test=cast(Examples, TensorDataset(features[train:], target[train:])),
    )


def unused_source(tmp: Path) -> SeriesSource:
    """A source the synthetic task never reads (it makes its own data)."""
    return SeriesSource("synthetic", "csv", tmp / "none.csv", "time", "value")
