"""What a training task is: the plugin interface every task implements.

A task is Python code installed on the node (an entry point in the ``hanse.tasks``
group), never code shipped by the researcher. It supplies the model, reads a
dataset the node hands it, computes a loss and evaluates. The training loop itself,
differential privacy, round counting and the egress check are the node's (see
:mod:`federation.training` and :mod:`federation.guard`), so a task cannot bypass them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch
from torch.utils.data import Dataset

ENTRY_POINT_GROUP = "hanse.tasks"
"""The entry-point group tasks register under; the entry point's name is the task id."""


@dataclass(frozen=True)
class SeriesSource:
    """An hourly time series the node holds, as declared in its config.

    The node resolves a dataset id to this; the task reads only this file.
    """

    dataset_id: str
    """The dataset's id in the node's catalog."""
    format: Literal["csv", "parquet"]
    """How the file is stored."""
    path: Path
    """The file on the node."""
    timestamp_column: str
    """The column holding each row's time."""
    value_column: str
    """The column holding the value to forecast."""


@dataclass(frozen=True)
class TaskData:
    """A dataset split for one site: examples to train on and held-out examples."""

    train: Dataset[tuple[torch.Tensor, torch.Tensor]]
    """Training examples, each ``(features, target)``."""
    test: Dataset[tuple[torch.Tensor, torch.Tensor]]
    """Held-out examples (the latest part of the series), each ``(features, target)``."""


@runtime_checkable
class Task(Protocol):
    """A training task: model, data reading, loss and evaluation."""

    id: str
    """Stable id, for example ``forecast-next-hour``; agreements name it."""

    version: str
    """The task's version; part of its content hash."""

    metrics: tuple[str, ...]
    """The scalar metric keys :meth:`evaluate` returns; nothing else may leave a node."""

    def content_hash(self) -> str:
        """``sha256:<hex>`` over the task's code and settings; agreements pin it."""
        ...

    def build_model(self) -> torch.nn.Module:
        """A freshly initialised model (the same architecture on every node)."""
        ...

    def load(self, source: SeriesSource) -> TaskData:
        """Read ``source`` and split it into training and held-out examples.

        Raises:
            TaskDataError: the file is missing, a mapped column is absent, or too few rows.
        """
        ...

    def loss(
        self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """Mean loss of ``model`` over ``batch`` (a scalar tensor, differentiable)."""
        ...

    def evaluate(
        self, model: torch.nn.Module, data: Dataset[tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[str, float]:
        """Metrics of ``model`` on ``data``: exactly the keys in :attr:`metrics`."""
        ...


class TaskDataError(ValueError):
    """A task could not read the data the node handed it; the message says why."""


class TaskNotFoundError(LookupError):
    """No task with that id is installed on this node."""
