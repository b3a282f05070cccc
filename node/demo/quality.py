"""How good the federated model is: held-out error next to a city alone and all data pooled.

After a run, the researcher's node compares three ways of training the run's task on
each city's held-out weeks (mean absolute error in counts per hour):

- **federated**: the run's final model (``model.pt``), trained under DP-SGD where each
  city kept its data;
- **local**: each city trains alone on its own data (no DP: the data never leaves);
- **centralized**: one model on every city's training data pooled in one place, what
  the data spaces exist to avoid, as the upper reference.

The baselines see exactly what the run saw: the same training examples (the same cap
as the node's runner, ``training.max_train_examples``), the same initial model (seeded
as the ServerApp seeds it), the same optimizer, batch size and learning rate, and as
many epochs as the run's rounds times its local epochs. Everything is seeded, so the
same inputs give the same numbers. It runs in the demo, which holds every city's
files; a real federation has no place where the local and pooled baselines could run.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import ConcatDataset, Dataset

from federation.runspec import OPTIMIZERS, OptimizerName
from federation.tasks.base import SeriesSource, Task, TaskData
from federation.tasks.forecast import HOURS_PER_WEEK, ForecastExamples
from federation.training import TrainSettings, capped_train, evaluate, fit

Configuration = Literal["federated", "local", "centralized"]
"""One of the three ways of training the comparison holds."""

Examples = Dataset[tuple[torch.Tensor, torch.Tensor]]


class QualityError(ValueError):
    """The comparison cannot run as asked; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class CitySite:
    """A city of the run and the dataset it trained on."""

    city: str
    """The city node's name, e.g. ``city-a``."""
    participant_id: str
    """The city's participant id, e.g. ``urn:hanse:city-a``."""
    sensor: str
    """A human label for the dataset, e.g. ``107 Quay Street``."""
    source: SeriesSource
    """The dataset file the city trained on under contract, as the node's runner reads it."""


@dataclass(frozen=True)
class QualitySettings:
    """The run's training settings, which the baselines repeat.

    Raises:
        QualityError: a setting is out of range.
    """

    rounds: int
    """The federated run's rounds; at least 1."""
    local_epochs: int = 1
    """Epochs per round (the RunSpec's); at least 1."""
    batch_size: int = 64
    """Examples per batch (the RunSpec's); at least 1."""
    learning_rate: float = 0.01
    """Step size (the RunSpec's); above 0."""
    optimizer: OptimizerName = "sgd"
    """Local optimiser (the RunSpec's): ``sgd`` or ``adam``."""
    max_train_examples: int = 0
    """The cities' ``training.max_train_examples`` (the latest examples kept; 0 = all)."""
    seed: int = 0
    """The run's seed: the initial model's and every baseline's data order."""

    def __post_init__(self) -> None:
        for name in ("rounds", "local_epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise QualityError(f"{name} must be a whole number of at least 1, not {value!r}")
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise QualityError(f"learning_rate must be a number above 0, not {rate!r}")
        if not math.isfinite(rate):
            raise QualityError(f"learning_rate must be a finite number, not {rate!r}")
        if self.optimizer not in OPTIMIZERS:
            raise QualityError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        cap = self.max_train_examples
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise QualityError(
                f"max_train_examples must be a whole number of at least 0 (0 = all), not {cap!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise QualityError(f"seed must be a whole number of at least 0, not {self.seed!r}")

    @property
    def epochs(self) -> int:
        """Passes over the training data a baseline makes: rounds times local epochs."""
        return self.rounds * self.local_epochs


@dataclass(frozen=True)
class WeekForecast:
    """One held-out week of a city: what happened and what each model forecast."""

    city: str
    """The city node's name."""
    sensor: str
    """The dataset's human label."""
    hours: tuple[datetime, ...]
    """Each forecast hour (timezone-aware, as the dataset's timestamps were read)."""
    actual: tuple[float, ...]
    """The counts that were recorded, per hour."""
    federated: tuple[float, ...]
    """The federated model's next-hour forecasts, in counts per hour."""
    local: tuple[float, ...]
    """The city's local-only model's forecasts, in counts per hour."""
    centralized: tuple[float, ...]
    """The pooled model's forecasts, in counts per hour."""


@dataclass(frozen=True)
class QualityComparison:
    """Held-out mean absolute error (counts per hour) per city, for each configuration."""

    federated: Mapping[str, float]
    """City -> MAE of the run's final model (the DP model)."""
    local: Mapping[str, float]
    """City -> MAE of a model the city trained alone (no DP: its data never leaves)."""
    centralized: Mapping[str, float]
    """City -> MAE of one model trained on all cities' data pooled."""
    week: WeekForecast
    """A held-out week of the first city, for the forecast plot."""

    def mean(self, configuration: Configuration) -> float:
        """The unweighted mean over the cities of ``configuration``'s MAE.

        Raises:
            QualityError: ``configuration`` is not one of the three.
        """
        if configuration not in ("federated", "local", "centralized"):
            raise QualityError(
                "configuration must be 'federated', 'local' or 'centralized', "
                f"not {configuration!r}"
            )
        values = list(getattr(self, configuration).values())
        return float(np.mean(values))


def compare_quality(
    task: Task,
    model_path: Path,
    sites: Sequence[CitySite],
    settings: QualitySettings,
    progress: Callable[[str], None] | None = None,
) -> QualityComparison:
    """Held-out MAE of the run's model, of each city alone, and of all data pooled.

    Args:
        task: The run's task (the installed one, with the run's content hash).
        model_path: The run's final model, a torch state dict (``model.pt``).
        sites: The cities of the run, each with the dataset it trained on; the first
            city's held-out week is the forecast example.
        settings: The run's training settings, which the baselines repeat.
        progress: Called with one short line per step (for the console).

    Returns:
        Per city, the three held-out MAEs, and a week of forecasts of the first city.

    Raises:
        QualityError: no sites, two sites with one city name, the model file missing,
            unreadable or not a model of ``task``, a dataset that cannot be read, or a
            task whose held-out examples carry no timestamps for the week.
    """
    say = progress or (lambda line: None)
    if not sites:
        raise QualityError("no city sites to compare on; pass the cities the run trained with")
    names = [site.city for site in sites]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise QualityError(f"city {doubled[0]!r} is listed twice; each city once")
    federated_model = _load_model(task, model_path)
    say(f"quality: loaded the run's model from {model_path}")

    data: dict[str, TaskData] = {}
    for site in sites:
        data[site.city] = _site_data(task, site, settings.max_train_examples)
        say(
            f"quality: {site.city} ({site.sensor}): {_count(data[site.city].train)} training, "
            f"{_count(data[site.city].test)} held-out examples"
        )

    federated = {city: _mae(task, federated_model, split) for city, split in data.items()}
    say(f"quality: federated model, mean held-out MAE {_mean(federated):.1f}")

    local_models: dict[str, torch.nn.Module] = {}
    local: dict[str, float] = {}
    for city, split in data.items():
        local_models[city] = _trained(task, split.train, settings)
        local[city] = _mae(task, local_models[city], split)
        say(
            f"quality: {city} trained alone ({settings.epochs} epochs), "
            f"held-out MAE {local[city]:.1f}"
        )

    pooled: Examples = ConcatDataset([split.train for split in data.values()])
    say(
        f"quality: training one model on all {len(data)} cities pooled "
        f"({_count(pooled)} examples, {settings.epochs} epochs)"
    )
    centralized_model = _trained(task, pooled, settings)
    centralized = {city: _mae(task, centralized_model, split) for city, split in data.items()}
    say(f"quality: centralized model, mean held-out MAE {_mean(centralized):.1f}")

    first = sites[0]
    week = _week(
        first,
        data[first.city].test,
        federated_model,
        local_models[first.city],
        centralized_model,
    )
    say(f"quality: forecast week of {first.city} from {week.hours[0]:%Y-%m-%d}")
    return QualityComparison(federated=federated, local=local, centralized=centralized, week=week)


def _load_model(task: Task, path: Path) -> torch.nn.Module:
    if not path.is_file():
        raise QualityError(
            f"model file {path} does not exist; pass the model.pt of a completed run"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise QualityError(
            f"model file {path} is not a saved torch state dict ({type(exc).__name__}); "
            "pass the model.pt the run's aggregator wrote"
        ) from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise QualityError(
            f"model file {path} holds a {type(state).__name__}, not a state dict of tensors; "
            "pass the model.pt the run's aggregator wrote"
        )
    model = _fresh_model(task, seed=0)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state.items()}
    if found != expected:
        raise QualityError(
            f"model file {path} is not a model of task {task.id!r}: {_mismatch(expected, found)}; "
            "pass the model.pt of a run of this task with the same settings"
        )
    model.load_state_dict(dict(state))
    model.eval()
    return model


def _mismatch(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> str:
    missing = [key for key in expected if key not in found]
    extra = [key for key in found if key not in expected]
    if missing:
        return f"tensor {missing[0]!r} is missing ({len(missing)} missing in all)"
    if extra:
        return f"tensor {extra[0]!r} is not in the task's model ({len(extra)} extra in all)"
    key = next(key for key in expected if expected[key] != found[key])
    return f"tensor {key!r} has shape {list(found[key])}, the task's model {list(expected[key])}"


def _fresh_model(task: Task, seed: int) -> torch.nn.Module:
    # As the ServerApp builds the initial model: the global generator seeded with the
    # run's seed. The caller's generator state is restored afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return task.build_model()


def _site_data(task: Task, site: CitySite, max_train_examples: int) -> TaskData:
    try:
        data = task.load(site.source)
    except ValueError as exc:  # TaskDataError, and whatever a task raises on bad values
        raise QualityError(
            f"{site.city}: dataset {site.source.dataset_id!r} ({site.source.path}) "
            f"cannot be read: {exc}"
        ) from exc
    return capped_train(data, max_train_examples)


def _trained(task: Task, train: Examples, settings: QualitySettings) -> torch.nn.Module:
    """A model from the run's initial weights trained on ``train`` without DP."""
    model = _fresh_model(task, settings.seed)
    fit(
        task,
        model,
        TaskData(train=train, test=train),
        TrainSettings(
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            seed=settings.seed,
            optimizer=settings.optimizer,
        ),
        None,
    )
    model.eval()
    return model


def _mae(task: Task, model: torch.nn.Module, data: TaskData) -> float:
    return evaluate(task, model, data)["mae"]


def _week(
    site: CitySite,
    test: Examples,
    federated: torch.nn.Module,
    local: torch.nn.Module,
    centralized: torch.nn.Module,
) -> WeekForecast:
    if not isinstance(test, ForecastExamples):
        raise QualityError(
            f"the forecast week needs held-out examples with hours and counts "
            f"(ForecastExamples), task gave {type(test).__name__}"
        )
    rows = _week_rows(test)
    features = test.features[rows]

    def forecast(model: torch.nn.Module) -> tuple[float, ...]:
        model.eval()
        with torch.no_grad():
            scaled = model(features).reshape(-1).double().numpy()
        return tuple(float(value) for value in test.scale.inverse(scaled))

    return WeekForecast(
        city=site.city,
        sensor=site.sensor,
        hours=tuple(stamp.to_pydatetime() for stamp in test.times[rows]),
        actual=tuple(float(value) for value in test.counts[rows]),
        federated=forecast(federated),
        local=forecast(local),
        centralized=forecast(centralized),
    )


def _week_rows(test: ForecastExamples) -> slice:
    """The first 168 held-out examples on consecutive hours (or the first 168 if none)."""
    hours = np.asarray((test.times - test.times[0]) / pd.Timedelta(hours=1), dtype=np.float64)
    steps = np.diff(np.asarray(hours)) == 1
    run = 0
    for index, consecutive in enumerate(steps):
        run = run + 1 if consecutive else 0
        if run == HOURS_PER_WEEK - 1:
            start = index + 1 - run
            return slice(start, start + HOURS_PER_WEEK)
    return slice(0, min(HOURS_PER_WEEK, len(test)))


def _count(dataset: Examples) -> int:
    return len(dataset)  # type: ignore[arg-type]  # map-style: the tasks' datasets are sized


def _mean(values: Mapping[str, float]) -> float:
    return float(np.mean(list(values.values())))


__all__ = [
    "CitySite",
    "Configuration",
    "QualityComparison",
    "QualityError",
    "QualitySettings",
    "WeekForecast",
    "capped_train",
    "compare_quality",
]
