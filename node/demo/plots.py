"""The demo report's figures: learning curves of a run and a week of forecasts.

Each figure is built on a plain :class:`matplotlib.figure.Figure` with the Agg canvas
(no display, no pyplot and so no global figure state, whatever backend is configured)
and written as a PNG. The
``*_figure`` functions return the figure itself, for a caller (or a test) that wants
to inspect it before it is saved.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from node.demo.quality import WeekForecast

DPI = 110
"""Resolution of the written PNGs."""

UNIT = "pedestrians/hour"
"""The unit of every count and error in the demo's figures."""

_EVALUATE_MAE = "evaluate_mae"
_TRAIN_MAE = "train_mae"


class PlotError(ValueError):
    """A figure cannot be drawn from what was given; the message says what is wrong."""


def learning_curves_figure(
    metrics: Mapping[str, Any],
    names: Mapping[str, str],
    local: Mapping[str, float] | None = None,
) -> Figure:
    """The learning curves of a run, per city, from its ``metrics.json``.

    The left panel shows, per round, the held-out MAE of the aggregated model on each
    city's data (the ``evaluate`` phase; with the weighted mean over the cities in
    black) and, dashed in the city's colour, the MAE of the city's local-only model
    if ``local`` gives one. A right panel, when the run reported it, shows the
    held-out MAE of each city's own update after its local DP-SGD round (the
    ``train`` phase), before aggregation.

    Args:
        metrics: The run's ``metrics.json``, parsed: ``cities`` maps a participant id
            to rounds (``"1"``, ``"2"``, ...) to ``evaluate_mae``/``train_mae``; the
            optional ``evaluate`` maps rounds to the aggregate ``mae``.
        names: Participant id -> city name, for the legends.
        local: City name (or participant id) -> local-only MAE, drawn dashed.

    Raises:
        PlotError: ``metrics`` holds no per-city held-out MAE of any round.
    """
    found = _city_rounds(metrics)
    order = [p for p in names if p in found] + sorted(p for p in found if p not in names)
    cities = {participant: found[participant] for participant in order}
    rounds = sorted({r for by_round in cities.values() for r in by_round})
    has_train = any(_TRAIN_MAE in values for c in cities.values() for values in c.values())
    figure = Figure(figsize=(12.0 if has_train else 7.5, 4.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 2 if has_train else 1, squeeze=False)[0]
    held_out: Axes = panels[0]
    colors = _colors(len(cities))
    for (participant, by_round), color in zip(cities.items(), colors, strict=True):
        name = names.get(participant, participant)
        held_out.plot(
            rounds,
            _series(by_round, rounds, _EVALUATE_MAE),
            marker="o",
            color=color,
            label=f"{name}: federated model",
        )
        reference = _local_mae(local, name, participant)
        if reference is not None:
            held_out.axhline(
                reference,
                linestyle="--",
                linewidth=1.2,
                color=color,
                label=f"{name}: trained alone",
            )
    overall = _aggregate(metrics, rounds)
    if overall is not None:
        held_out.plot(
            rounds,
            overall,
            marker="s",
            color="black",
            linewidth=2.2,
            label="all cities (weighted mean)",
        )
    held_out.set_title("Federated model on each city's held-out weeks")
    _round_axis(held_out)
    held_out.legend(fontsize="small")
    if has_train:
        update: Axes = panels[1]
        for (participant, by_round), color in zip(cities.items(), colors, strict=True):
            update.plot(
                rounds,
                _series(by_round, rounds, _TRAIN_MAE),
                marker="o",
                color=color,
                label=names.get(participant, participant),
            )
        update.set_title("Each city's own update after its local DP-SGD round")
        _round_axis(update)
        update.legend(fontsize="small")
    figure.suptitle("Learning curves: held-out mean absolute error per round")
    return figure


def plot_learning_curves(
    metrics: Mapping[str, Any],
    names: Mapping[str, str],
    out: Path,
    local: Mapping[str, float] | None = None,
) -> Path:
    """Write the run's learning curves (:func:`learning_curves_figure`) to ``out``.

    Args:
        metrics: The run's ``metrics.json``, parsed.
        names: Participant id -> city name, for the legends.
        out: The PNG file to write (its folder is created).
        local: City name (or participant id) -> local-only MAE, drawn dashed.

    Returns:
        ``out``.

    Raises:
        PlotError: ``out`` is not a ``.png`` path, or ``metrics`` holds no per-city
            held-out MAE (nothing is written).
    """
    _check_png(out)
    return _save(learning_curves_figure(metrics, names, local), out)


def forecast_week_figure(week: WeekForecast) -> Figure:
    """One held-out week of a city: recorded counts and the three models' forecasts.

    Raises:
        PlotError: the week is empty or its series differ in length.
    """
    series = {
        "federated": week.federated,
        "local": week.local,
        "centralized": week.centralized,
    }
    count = len(week.hours)
    lengths = {"actual": len(week.actual), **{k: len(v) for k, v in series.items()}}
    if count == 0 or any(length != count for length in lengths.values()):
        raise PlotError(
            f"the forecast week of {week.city} has {count} hours and series of lengths "
            f"{lengths}; every series needs one value per hour, and at least one hour"
        )
    figure = Figure(figsize=(12.0, 4.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    # matplotlib.dates is not annotated (hence the ignores): days since the epoch.
    hours = mdates.date2num(list(week.hours))  # type: ignore[no-untyped-call]
    axes.plot(hours, week.actual, color="black", linewidth=2.0, label="recorded")
    styles = {
        "federated": ("tab:blue", "federated (DP, data stays in each city)"),
        "local": ("tab:orange", f"{week.city} alone"),
        "centralized": ("tab:green", "centralized (all data pooled)"),
    }
    for key, values in series.items():
        color, label = styles[key]
        error = sum(abs(a - b) for a, b in zip(values, week.actual, strict=True)) / count
        axes.plot(
            hours, values, color=color, linewidth=1.2, label=f"{label}: MAE {error:.0f} this week"
        )
    zone = week.hours[0].tzinfo
    axes.xaxis.set_major_locator(mdates.DayLocator(tz=zone))  # type: ignore[no-untyped-call]
    days = mdates.DateFormatter("%a %d %b", tz=zone)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_formatter(days)
    axes.set_xlabel("hour (as recorded in the dataset)")
    axes.set_ylabel(f"count ({UNIT})")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    axes.set_title(
        f"{week.city} ({week.sensor}): next-hour forecasts over a held-out week, "
        f"{week.hours[0]:%d %b} to {week.hours[-1]:%d %b %Y}"
    )
    return figure


def plot_forecast_week(week: WeekForecast, out: Path) -> Path:
    """Write the forecast week (:func:`forecast_week_figure`) to ``out``.

    Returns:
        ``out``.

    Raises:
        PlotError: ``out`` is not a ``.png`` path, or the week is empty or ragged
            (nothing is written).
    """
    _check_png(out)
    return _save(forecast_week_figure(week), out)


def _city_rounds(metrics: Mapping[str, Any]) -> dict[str, dict[int, dict[str, float]]]:
    """Participant id -> round -> metrics, from ``metrics['cities']``; checked."""
    raw = metrics.get("cities") if isinstance(metrics, Mapping) else None
    cities: dict[str, dict[int, dict[str, float]]] = {}
    if isinstance(raw, Mapping):
        for participant, by_round in raw.items():
            if not isinstance(by_round, Mapping):
                continue
            rounds: dict[int, dict[str, float]] = {}
            for key, values in by_round.items():
                if str(key).isdigit() and isinstance(values, Mapping):
                    rounds[int(key)] = {
                        str(k): float(v)
                        for k, v in values.items()
                        if isinstance(v, int | float) and not isinstance(v, bool)
                    }
            if rounds:
                cities[str(participant)] = rounds
    if not any(_EVALUATE_MAE in v for by_round in cities.values() for v in by_round.values()):
        raise PlotError(
            "the metrics hold no per-city held-out MAE of any round ('cities' -> participant "
            f"-> round -> '{_EVALUATE_MAE}'); pass the metrics.json of a completed run"
        )
    return cities


def _series(
    by_round: Mapping[int, Mapping[str, float]], rounds: Sequence[int], key: str
) -> list[float]:
    return [by_round.get(r, {}).get(key, math.nan) for r in rounds]


def _aggregate(metrics: Mapping[str, Any], rounds: Sequence[int]) -> list[float] | None:
    raw = metrics.get("evaluate")
    if not isinstance(raw, Mapping):
        return None
    values: list[float] = []
    for r in rounds:
        entry = raw.get(str(r))
        value = entry.get("mae") if isinstance(entry, Mapping) else None
        values.append(float(value) if isinstance(value, int | float) else math.nan)
    return None if all(math.isnan(v) for v in values) else values


def _local_mae(local: Mapping[str, float] | None, name: str, participant: str) -> float | None:
    if local is None:
        return None
    value = local.get(name, local.get(participant))
    return float(value) if value is not None and math.isfinite(value) else None


def _round_axis(axes: Axes) -> None:
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("round")
    axes.set_ylabel(f"mean absolute error ({UNIT})")
    axes.grid(alpha=0.3)


def _colors(count: int) -> list[str]:
    palette = [f"C{i}" for i in range(10)]
    return [palette[i % len(palette)] for i in range(count)]


def _check_png(out: Path) -> None:
    if out.suffix.lower() != ".png":
        raise PlotError(f"figure path {out} must end in .png")


def _save(figure: Figure, out: Path) -> Path:
    """Write ``figure`` as a PNG to ``out`` all at once (a temporary file, then renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}-", suffix=".png")
    os.close(handle)
    try:
        figure.savefig(temporary, format="png", dpi=DPI)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out


__all__ = [
    "DPI",
    "UNIT",
    "PlotError",
    "forecast_week_figure",
    "learning_curves_figure",
    "plot_forecast_week",
    "plot_learning_curves",
]
