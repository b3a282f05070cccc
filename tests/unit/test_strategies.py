"""Tests for the aggregation strategies a researcher can pick (federation.strategies)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx, FedTrimmedAvg, Krum, Strategy

from federation.runspec import STRATEGIES, RunSpec
from federation.strategies import make_strategy
from tests.unit.canned_grid import Answer, CannedGrid, as_serverapp, trains

CITIES = [f"urn:hanse:city-{n}" for n in range(5)]


@pytest.fixture(autouse=True)
def serverapp_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    as_serverapp(monkeypatch)


def a_spec(cities: int = 3, **fields: Any) -> RunSpec:
    base: dict[str, Any] = {
        "task_id": "forecast-next-hour",
        "task_hash": "sha256:" + "bb" * 32,
        "rounds": 1,
        "agreements": {city: f"agr-{city}" for city in CITIES[:cities]},
        "min_nodes": 2,
    }
    return RunSpec(**{**base, **fields})


def model() -> ArrayRecord:
    return ArrayRecord({"weight": Array(np.zeros((2, 2), dtype=np.float32))})


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("fedavg", FedAvg),
        ("fedprox", FedProx),
        ("fedadam", FedAdam),
        ("krum", Krum),
        ("trimmed-mean", FedTrimmedAvg),
    ],
)
def test_each_name_gives_its_flower_strategy_waiting_for_min_nodes(
    name: str, kind: type[Strategy]
) -> None:
    # Prepare
    spec = a_spec(strategy=name, min_nodes=3)

    # Execute
    strategy = make_strategy(spec)

    # Assert
    assert type(strategy) is kind
    assert isinstance(strategy, FedAvg)
    assert strategy.min_train_nodes == 3
    assert strategy.min_evaluate_nodes == 3
    assert strategy.min_available_nodes == 3
    assert strategy.fraction_train == 1.0
    assert strategy.fraction_evaluate == 1.0


def test_every_strategy_the_spec_accepts_has_a_strategy() -> None:
    # Execute
    kinds = {name: type(make_strategy(a_spec(strategy=name))) for name in STRATEGIES}

    # Assert
    assert kinds == {
        "fedavg": FedAvg,
        "fedprox": FedProx,
        "fedadam": FedAdam,
        "krum": Krum,
        "trimmed-mean": FedTrimmedAvg,
    }


def test_fedprox_takes_the_proximal_weight_of_the_spec() -> None:
    # Execute
    strategy = make_strategy(a_spec(strategy="fedprox", proximal_mu=0.7))

    # Assert
    assert isinstance(strategy, FedProx)
    assert strategy.proximal_mu == 0.7


def test_fedadam_takes_the_local_learning_rate_of_the_spec() -> None:
    # Execute
    strategy = make_strategy(a_spec(strategy="fedadam", learning_rate=0.03))

    # Assert
    assert isinstance(strategy, FedAdam)
    assert strategy.eta_l == 0.03
    assert strategy.eta == 0.01


def test_trimmed_mean_trims_a_fifth_at_each_end() -> None:
    # Execute
    strategy = make_strategy(a_spec(strategy="trimmed-mean"))

    # Assert
    assert isinstance(strategy, FedTrimmedAvg)
    assert strategy.beta == 0.2


@pytest.mark.parametrize(("cities", "malicious"), [(1, 0), (3, 0), (4, 1), (5, 1)])
def test_krum_assumes_one_malicious_city_from_four_on(cities: int, malicious: int) -> None:
    # Execute
    strategy = make_strategy(a_spec(cities, strategy="krum", min_nodes=1))

    # Assert
    assert isinstance(strategy, Krum)
    assert strategy.num_malicious_nodes == malicious


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_runs_a_round_on_a_grid(name: str) -> None:
    # Prepare
    spec = a_spec(4, strategy=name, min_nodes=4, proximal_mu=0.5)
    answers: dict[int, Answer] = {
        node: trains(0.5, examples=10, shift=float(node)) for node in (1, 2, 3, 4)
    }
    grid = CannedGrid(answers)

    # Execute
    result = make_strategy(spec).start(grid=grid, initial_arrays=model(), num_rounds=1, timeout=5)

    # Assert
    weight = result.arrays["weight"].numpy()
    assert weight.shape == (2, 2)
    assert np.all(np.isfinite(weight))
    assert np.any(weight != 0.0), "the round changed the model"
    assert {m.metadata.dst_node_id for m in grid.sent} == {1, 2, 3, 4}
    if name == "fedprox":
        config = grid.sent[0].content.config_records["config"]
        assert config["proximal-mu"] == 0.5


def test_krum_leaves_out_an_outlier_city() -> None:
    # Prepare: three close updates and one far away.
    spec = a_spec(4, strategy="krum", min_nodes=4)
    answers: dict[int, Answer] = {
        1: trains(0.5, shift=1.0),
        2: trains(0.5, shift=1.1),
        3: trains(0.5, shift=0.9),
        4: trains(0.5, shift=50.0),
    }

    # Execute
    result = make_strategy(spec).start(
        grid=CannedGrid(answers), initial_arrays=model(), num_rounds=1, timeout=5
    )

    # Assert
    weight = result.arrays["weight"].numpy()
    assert any(np.allclose(weight, honest) for honest in (1.0, 1.1, 0.9)), weight
