"""Tests for the demo report's figures (node.demo.plots): learning curves and a forecast week."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from federation.tasks import ForecastTask
from node.demo.plots import (
    DPI,
    PlotError,
    forecast_week_figure,
    learning_curves_figure,
    plot_forecast_week,
    plot_learning_curves,
)
from node.demo.quality import WeekForecast, compare_quality
from tests.unit.demo_quality_support import (
    SETTINGS,
    city_sites,
    metrics_json,
    serverapp_run,
    trained_model_file,
)

CITIES = ["urn:hanse:city-a", "urn:hanse:city-b", "urn:hanse:city-c"]
NAMES = {participant: participant.rsplit(":", 1)[1] for participant in CITIES}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> WeekForecast:
    task = ForecastTask()
    sites = city_sites(tmp_path_factory.mktemp("sensors"))
    model = trained_model_file(task, sites[0], tmp_path_factory.mktemp("run") / "model.pt")
    return compare_quality(task, model, sites, SETTINGS).week


def _labels(axes: Axes) -> list[str]:
    return [str(line.get_label()) for line in axes.get_lines()]


def _ydata(line: Line2D) -> list[float]:
    values: list[float] = np.asarray(line.get_ydata(), dtype=float).tolist()
    return values


def _png(path: Path) -> tuple[int, ...]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    return tuple(image.imread(path).shape)


def test_learning_curves_show_each_city_its_local_reference_and_the_mean() -> None:
    # Prepare
    metrics = metrics_json(CITIES, rounds=3)
    local = {"city-a": 90.0, "city-b": 120.0}  # city-c has no local reference

    # Execute
    figure = learning_curves_figure(metrics, NAMES, local)

    # Assert
    held_out, update = figure.axes
    assert _labels(held_out) == [
        "city-a: federated model",
        "city-a: trained alone",
        "city-b: federated model",
        "city-b: trained alone",
        "city-c: federated model",
        "all cities (weighted mean)",
    ]
    first = held_out.get_lines()[0]
    assert np.asarray(first.get_xdata()).tolist() == [1, 2, 3]
    assert _ydata(first) == [300.0, 150.0, 100.0]
    assert _ydata(held_out.get_lines()[1]) == [90.0, 90.0]
    assert _labels(update) == ["city-a", "city-b", "city-c"]
    assert "pedestrians/hour" in held_out.get_ylabel() and held_out.get_xlabel() == "round"
    assert held_out.get_title() and update.get_title() and held_out.get_legend() is not None


def test_the_metrics_json_the_serverapp_writes_is_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    metrics = serverapp_run(tmp_path / "run", CITIES[:2], 2, monkeypatch)

    # Execute
    figure = learning_curves_figure(metrics, NAMES, {"city-b": 80.0})

    # Assert
    held_out, update = figure.axes
    assert _labels(held_out) == [
        "city-a: federated model",
        "city-b: federated model",
        "city-b: trained alone",
        "all cities (weighted mean)",
    ]
    assert _ydata(held_out.get_lines()[0]) == [151.0, 151.0]
    assert _ydata(held_out.get_lines()[3]) == [151.5, 151.5]
    assert _ydata(update.get_lines()[1]) == [202.0, 202.0]


def test_without_train_metrics_or_local_models_one_panel_remains() -> None:
    # Prepare
    metrics = metrics_json(CITIES[:2], rounds=2, train=False)

    # Execute
    figure = learning_curves_figure(metrics, NAMES)

    # Assert
    (held_out,) = figure.axes
    assert _labels(held_out) == [
        "city-a: federated model",
        "city-b: federated model",
        "all cities (weighted mean)",
    ]


def test_a_round_a_city_failed_is_a_gap_and_an_unnamed_city_keeps_its_id() -> None:
    # Prepare
    metrics = metrics_json(CITIES[:2], rounds=3, failed=("urn:hanse:city-b", 2))

    # Execute
    figure = learning_curves_figure(metrics, {"urn:hanse:city-a": "city-a"})

    # Assert
    lines = figure.axes[0].get_lines()
    assert lines[1].get_label() == "urn:hanse:city-b: federated model"
    values = _ydata(lines[1])
    assert values[0] == 340.0 and math.isnan(values[1]) and values[2] == 140.0


def test_plot_learning_curves_writes_a_png(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "report" / "learning.png"

    # Execute
    written = plot_learning_curves(metrics_json(CITIES, 3), NAMES, out, {"city-a": 90.0})

    # Assert
    assert written == out
    height, width, channels = _png(out)
    assert (width, height) == (12 * DPI, round(4.8 * DPI)) and channels in (3, 4)
    assert [p.name for p in out.parent.iterdir()] == ["learning.png"]  # no temporary file left


@pytest.mark.parametrize(
    ("metrics", "name"),
    [({}, "learning.png"), ({"cities": {}}, "learning.png"), (metrics_json(CITIES, 2), "a.svg")],
)
def test_learning_curves_of_nothing_or_to_a_non_png_path_are_refused(
    metrics: dict[str, object], name: str, tmp_path: Path
) -> None:
    # Execute
    with pytest.raises(PlotError, match=r"no per-city held-out MAE|must end in \.png"):
        plot_learning_curves(metrics, NAMES, tmp_path / name)

    # Assert
    assert list(tmp_path.iterdir()) == []


def test_the_forecast_week_shows_the_recorded_counts_and_three_forecasts(
    week: WeekForecast,
) -> None:
    # Execute
    figure = forecast_week_figure(week)

    # Assert
    (axes,) = figure.axes
    labels = _labels(axes)
    assert labels[0] == "recorded"
    assert [label.split(":")[0] for label in labels[1:]] == [
        "federated (DP, data stays in each city)",
        "city-a alone",
        "centralized (all data pooled)",
    ]
    assert all("MAE" in label and "this week" in label for label in labels[1:])
    assert all(np.asarray(line.get_xdata()).shape == (168,) for line in axes.get_lines())
    assert _ydata(axes.get_lines()[0]) == list(week.actual)
    assert "pedestrians/hour" in axes.get_ylabel()
    assert "107 Quay Street" in axes.get_title()
    assert len(axes.get_xticks()) in (7, 8)  # one tick per day


def test_plot_forecast_week_writes_a_png(week: WeekForecast, tmp_path: Path) -> None:
    # Execute
    out = plot_forecast_week(week, tmp_path / "week.png")

    # Assert
    height, width, _ = _png(out)
    assert (width, height) == (12 * DPI, round(4.8 * DPI))


def test_an_empty_or_ragged_week_is_refused_and_nothing_written(
    week: WeekForecast, tmp_path: Path
) -> None:
    # Prepare
    ragged = dataclasses.replace(week, local=week.local[:-1])
    empty = dataclasses.replace(week, hours=(), actual=(), federated=(), local=(), centralized=())

    # Execute / Assert
    with pytest.raises(PlotError, match=r"168 hours and series of lengths .*'local': 167"):
        plot_forecast_week(ragged, tmp_path / "week.png")
    with pytest.raises(PlotError, match="at least one hour"):
        plot_forecast_week(empty, tmp_path / "week.png")
    assert list(tmp_path.iterdir()) == []
