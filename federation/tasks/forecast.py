"""The built-in task: forecast the next hour of an hourly count series.

Any hourly series of non-negative counts works (pedestrians, cyclists, cars): the node
maps a CSV or Parquet file's timestamp and value columns (:class:`SeriesSource`). An
example is one target hour whose whole lag window (the ``max(lags)`` hours before it)
and the hour itself are present; gaps are never filled. Inputs are the lagged values
and the target hour's calendar position; values are ``log1p``-transformed and
standardised per site with a scale fitted on the training hours only. The held-out
set is the last ``test_weeks`` weeks of the series.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from federation.tasks.base import SeriesSource, TaskData, TaskDataError
from federation.tasks.features import (
    FloatArray,
    HourlyGrid,
    IntArray,
    SiteScale,
    calendar_features,
    check_counts,
    complete_windows,
    hourly_grid,
    lag_features,
    read_series,
)

TASK_ID = "forecast-next-hour"
"""The built-in task's id (its entry-point name)."""

TASK_VERSION = "1.0.0"
"""Bumped whenever the task's behaviour changes in a way its settings do not show."""

DEFAULT_LAGS: tuple[int, ...] = (*range(1, 25), 168)
"""The previous 24 hours and the same hour one week before."""

CALENDAR_FEATURES = 4
"""Hour-of-day and day-of-week, each as a sin/cos pair."""

SOURCE_FILES = ("forecast.py", "features.py")
"""The files whose bytes the content hash covers."""

HOURS_PER_WEEK = 168


class ForecastExamples(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Examples of one site: ``(features, target)`` pairs plus what evaluation needs.

    ``features`` are ``float32`` of shape ``(n_features,)``; ``target`` is ``float32`` of
    shape ``(1,)``, the next hour's value on the site's scale.
    """

    def __init__(
        self,
        features: torch.Tensor,
        targets: torch.Tensor,
        counts: FloatArray,
        times: pd.DatetimeIndex,
        scale: SiteScale,
    ) -> None:
        if not (features.shape[0] == targets.shape[0] == counts.shape[0] == len(times)):
            raise ValueError("features, targets, counts and times must have one row per example")
        self.features = features
        """All inputs, shape ``(n, n_features)``."""
        self.targets = targets
        """All targets on the site's scale, shape ``(n, 1)``."""
        self.counts = counts
        """The targets in original units (counts per hour), shape ``(n,)``."""
        self.times = times
        """Each target's hour (UTC)."""
        self.scale = scale
        """The site's scale (fitted on training hours) to map predictions back to counts."""

    def __len__(self) -> int:
        """Number of examples."""
        return int(self.features.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Example ``index``: ``(features, target)``."""
        return self.features[index], self.targets[index]


class ForecastTask:
    """Next-hour forecasting with a small MLP on lagged, log-scaled counts.

    Args:
        lags: Hours before the target whose values are inputs (positive, distinct).
        hidden_size: Units per hidden layer.
        hidden_layers: Number of hidden ``Linear`` + ``ReLU`` layers (at least 1).
        test_weeks: Length of the held-out tail of the series, in weeks.
        min_train_examples: Fewest training examples :meth:`load` accepts.
        min_test_examples: Fewest held-out examples :meth:`load` accepts.

    Raises:
        ValueError: a setting is out of range.
    """

    id: str = TASK_ID
    version: str = TASK_VERSION
    metrics: tuple[str, ...] = ("mae", "rmse")

    def __init__(
        self,
        *,
        lags: tuple[int, ...] = DEFAULT_LAGS,
        hidden_size: int = 64,
        hidden_layers: int = 2,
        test_weeks: int = 4,
        min_train_examples: int = HOURS_PER_WEEK,
        min_test_examples: int = 24,
    ) -> None:
        lags = tuple(int(lag) for lag in lags)
        if not lags or min(lags) < 1 or len(set(lags)) != len(lags):
            raise ValueError(f"lags must be distinct whole hours >= 1, got {lags}")
        for name, value in (
            ("hidden_size", hidden_size),
            ("hidden_layers", hidden_layers),
            ("test_weeks", test_weeks),
            ("min_train_examples", min_train_examples),
            ("min_test_examples", min_test_examples),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.lags = tuple(sorted(lags))
        self.hidden_size = hidden_size
        self.hidden_layers = hidden_layers
        self.test_weeks = test_weeks
        self.min_train_examples = min_train_examples
        self.min_test_examples = min_test_examples

    @property
    def n_features(self) -> int:
        """Inputs per example: one per lag plus the calendar features."""
        return len(self.lags) + CALENDAR_FEATURES

    def hyperparameters(self) -> dict[str, Any]:
        """The settings, as JSON values (part of the content hash)."""
        return {
            "lags": list(self.lags),
            "hidden_size": self.hidden_size,
            "hidden_layers": self.hidden_layers,
            "test_weeks": self.test_weeks,
            "min_train_examples": self.min_train_examples,
            "min_test_examples": self.min_test_examples,
        }

    def content_hash(self) -> str:
        """``sha256:<hex>`` over the task's source files, version and settings."""
        digest = hashlib.sha256()
        folder = Path(__file__).resolve().parent
        for name in SOURCE_FILES:
            data = (folder / name).read_bytes()
            digest.update(f"{name}\n{len(data)}\n".encode())
            digest.update(data)
        settings = {"id": self.id, "version": self.version, **self.hyperparameters()}
        digest.update(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode())
        return f"sha256:{digest.hexdigest()}"

    def build_model(self) -> torch.nn.Module:
        """A fresh MLP (plain ``Linear``/``ReLU``; initialised from torch's global RNG)."""
        layers: list[torch.nn.Module] = []
        width = self.n_features
        for _ in range(self.hidden_layers):
            layers += [torch.nn.Linear(width, self.hidden_size), torch.nn.ReLU()]
            width = self.hidden_size
        layers.append(torch.nn.Linear(width, 1))
        return torch.nn.Sequential(*layers)

    def load(self, source: SeriesSource) -> TaskData:
        """Read ``source`` and split it: the last ``test_weeks`` weeks are held out.

        Raises:
            TaskDataError: the file is missing or unreadable, a mapped column is absent, a
                value is not a number or negative, or too few examples for either split.
        """
        grid = hourly_grid(read_series(source))
        check_counts(grid, source.value_column)
        cutoff = grid.values.size - self.test_weeks * HOURS_PER_WEEK
        targets = complete_windows(grid.present, max(self.lags))
        train_targets = targets[targets < cutoff]
        test_targets = targets[targets >= cutoff]
        if train_targets.size < self.min_train_examples or (
            test_targets.size < self.min_test_examples
        ):
            raise TaskDataError(
                f"dataset {source.dataset_id!r}: {train_targets.size} training and "
                f"{test_targets.size} held-out examples (from {int(grid.present.sum())} hours); "
                f"this task needs at least {self.min_train_examples} and "
                f"{self.min_test_examples}. An example is an hour whose previous "
                f"{max(self.lags)} hours are all present; the last {self.test_weeks} weeks are "
                f"held out. Provide a longer series with fewer gaps"
            )
        train_hours = grid.present[: max(cutoff, 0)]
        scale = SiteScale.fit(grid.values[: max(cutoff, 0)][train_hours])
        return TaskData(
            train=self._examples(grid, train_targets, scale),
            test=self._examples(grid, test_targets, scale),
        )

    def loss(
        self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """Mean squared error over ``batch`` on the site's scale (0 for an empty batch)."""
        features, targets = batch
        predictions: torch.Tensor = model(features)
        if targets.shape[0] == 0:
            return predictions.sum() * 0.0
        return torch.nn.functional.mse_loss(predictions, targets, reduction="mean")

    def evaluate(
        self, model: torch.nn.Module, data: Dataset[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        """Mean absolute and root mean squared error in counts per hour.

        Raises:
            TypeError: ``data`` did not come from :meth:`load` (its scale is needed).
            TaskDataError: ``data`` has no examples.
        """
        if not isinstance(data, ForecastExamples):
            raise TypeError(
                f"evaluate needs the examples ForecastTask.load returned, got {type(data).__name__}"
            )
        if len(data) == 0:
            raise TaskDataError("no examples to evaluate on")
        was_training = model.training
        model.eval()
        try:
            device = next(iter(model.parameters()), data.features).device
            with torch.no_grad():
                output = model(data.features.to(device))
            scaled = output.reshape(-1).double().cpu().numpy()
        finally:
            model.train(was_training)
        errors = data.scale.inverse(scaled) - data.counts
        return {
            "mae": float(np.mean(np.abs(errors))),
            "rmse": float(math.sqrt(float(np.mean(errors**2)))),
        }

    def _examples(self, grid: HourlyGrid, targets: IntArray, scale: SiteScale) -> ForecastExamples:
        scaled = scale.forward(np.nan_to_num(grid.values, nan=0.0))
        times = grid.times(targets)
        inputs = np.hstack((lag_features(scaled, targets, self.lags), calendar_features(times)))
        return ForecastExamples(
            features=torch.from_numpy(inputs.astype(np.float32)),
            targets=torch.from_numpy(scaled[targets].astype(np.float32)).reshape(-1, 1),
            counts=grid.values[targets].astype(np.float64),
            times=times,
            scale=scale,
        )


__all__ = [
    "CALENDAR_FEATURES",
    "DEFAULT_LAGS",
    "TASK_ID",
    "TASK_VERSION",
    "ForecastExamples",
    "ForecastTask",
]
