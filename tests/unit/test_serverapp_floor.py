"""The ServerApp under an aggregation floor (an agreement's minParticipants).

The real ServerApp runs on a Grid of canned cities (tests/unit/canned_grid.py): when
no training round reaches the floor, nothing is aggregated and the model it saves is
the run's initial model, not an empty one; the run still completes, and every round
says why it was not aggregated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict

from federation import serverapp
from federation.progress import MODEL_FILE, read_progress
from federation.runspec import RunSpec
from federation.tasks import ForecastTask
from tests.unit.canned_grid import CannedGrid, as_serverapp, fails

CITIES = {1: "urn:hanse:city-a", 2: "urn:hanse:city-b"}


def shifted(message: Message) -> Message:
    """A city that trains: the model it got, every weight moved by one."""
    if not message.metadata.message_type.startswith("train"):
        metrics = MetricRecord({"mae": 150.0, "rmse": 250.0, "num-examples": 672})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)
    arrays = message.content.array_records["arrays"].to_torch_state_dict()
    moved = {name: value + 1.0 for name, value in arrays.items()}
    content = RecordDict(
        {
            "arrays": ArrayRecord(moved),
            "metrics": MetricRecord({"mae": 200.0, "rmse": 300.0, "num-examples": 400}),
        }
    )
    return Message(content, reply_to=message)


def run(out: Path, min_aggregate: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The ServerApp over city A (trains) and city B (refuses every message)."""
    as_serverapp(monkeypatch)
    spec = RunSpec(
        task_id="forecast-next-hour",
        task_hash=ForecastTask().content_hash(),
        rounds=2,
        agreements={city: f"agr-{city}" for city in CITIES.values()},
        nodes=CITIES,
        min_nodes=2,
        min_aggregate=min_aggregate,
        seed=3,
        out_dir=str(out),
    )
    context = Context(
        run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=spec.to_run_config()
    )
    grid = CannedGrid({1: shifted, 2: fails("privacy budget exhausted")})
    serverapp.main(grid, context)
    return torch.load(out / MODEL_FILE)


def initial_model() -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    return ForecastTask().build_model().state_dict()


def test_no_round_reaches_the_floor_and_the_initial_model_is_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Execute: both cities must take part in an aggregate; only city A ever does.
    saved = run(tmp_path / "run", 2, monkeypatch)

    # Assert
    initial = initial_model()
    assert saved.keys() == initial.keys()
    assert all(torch.equal(saved[name], initial[name]) for name in initial)
    events = list(read_progress(tmp_path / "run"))
    train = [e for e in events if e["event"] == "round" and e["phase"] == "train"]
    assert [(e["round"], e["aggregated"]) for e in train] == [(1, False), (2, False)]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "completed"


def test_without_a_floor_the_one_update_is_aggregated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Execute: the same cities, no floor.
    saved = run(tmp_path / "run", 0, monkeypatch)

    # Assert: two rounds of city A's update, each moving every weight by one.
    initial = initial_model()
    assert all(torch.allclose(saved[name], initial[name] + 2.0) for name in initial)
