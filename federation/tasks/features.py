"""Reading an hourly series and turning it into forecasting features.

Everything here is plain arrays: :func:`read_series` reads a CSV or Parquet file
through the node's column mapping into a sorted, de-duplicated series of floats;
:func:`hourly_grid` lays it on an hourly grid with holes where hours are absent
(gaps are never filled); :func:`complete_windows` finds the hours whose whole lag
window is present; :func:`lag_features` and :func:`calendar_features` build the
inputs; :class:`SiteScale` is the per-site ``log1p`` standardisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq

from federation.tasks.base import SeriesSource, TaskDataError

HOUR = pd.Timedelta(hours=1)
"""The series' step."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class HourlyGrid:
    """A series laid on an hourly grid: ``values[i]`` is the hour ``start + i`` hours."""

    start: pd.Timestamp
    """The first hour (UTC)."""
    values: FloatArray
    """One value per hour from ``start`` to the last hour; NaN where the hour is absent."""

    @property
    def present(self) -> BoolArray:
        """Which hours have a value."""
        return ~np.isnan(self.values)

    def times(self, positions: IntArray) -> pd.DatetimeIndex:
        """The UTC timestamps of the grid ``positions``."""
        return pd.DatetimeIndex(self.start + pd.to_timedelta(positions, unit="h"))


@dataclass(frozen=True)
class SiteScale:
    """Per-site standardisation of ``log1p(count)``, fitted on training hours only."""

    mean: float
    """Mean of ``log1p(count)`` over the training hours."""
    std: float
    """Standard deviation of ``log1p(count)`` over the training hours (1.0 if constant)."""

    @classmethod
    def fit(cls, counts: FloatArray) -> SiteScale:
        """The scale of ``counts`` (non-negative, no NaN; the training hours).

        Raises:
            TaskDataError: ``counts`` is empty.
        """
        if counts.size == 0:
            raise TaskDataError("no training hours to fit the per-site scale on")
        logs = np.log1p(counts)
        std = float(logs.std())
        return cls(mean=float(logs.mean()), std=std if std > 1e-6 else 1.0)

    def forward(self, counts: FloatArray) -> FloatArray:
        """Counts to the model's scale: ``(log1p(count) - mean) / std``."""
        return (np.log1p(counts) - self.mean) / self.std

    def inverse(self, scaled: FloatArray) -> FloatArray:
        """The model's scale back to counts (never below zero)."""
        return np.maximum(np.expm1(scaled * self.std + self.mean), 0.0)


def read_series(source: SeriesSource) -> pd.Series:
    """The series in ``source``: float values indexed by UTC time, sorted, one per time.

    Naive timestamps are taken as UTC. Rows with an empty value are dropped (that hour
    is absent); where a timestamp appears more than once the last row wins.

    Raises:
        TaskDataError: the file is missing or unreadable, a mapped column is absent, a
            timestamp is empty or not a time, a value is not a finite number, or no row is
            left.
    """
    frame = _read_columns(source)
    where = f"dataset {source.dataset_id!r} ({source.path})"
    times = _parse_times(frame[source.timestamp_column], source.timestamp_column, where)
    values = _parse_values(frame[source.value_column], source.value_column, where)
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(numbers)
    if infinite.any():
        row = int(np.argmax(infinite))
        raise TaskDataError(
            f"{where}: column {source.value_column!r} data row {row + 1} holds {numbers[row]}; "
            f"values must be finite numbers: correct the data"
        )
    series = pd.Series(numbers, index=times, name=source.value_column)
    series = series.dropna()
    series = series[~series.index.duplicated(keep="last")].sort_index(kind="stable")
    if series.empty:
        raise TaskDataError(f"{where}: no row has both a timestamp and a value")
    return series


def hourly_grid(series: pd.Series) -> HourlyGrid:
    """``series`` laid on an hourly grid, with NaN for the absent hours.

    Raises:
        TaskDataError: the timestamps are not whole hours apart (sub-hourly or irregular
            data must be aggregated to hourly first).
    """
    index = pd.DatetimeIndex(series.index)
    start = index[0]
    offsets = (index - start).to_numpy()
    hour = np.timedelta64(1, "h")
    off_grid = offsets % hour != np.timedelta64(0, "h")
    if off_grid.any():
        bad = index[int(np.argmax(off_grid))]
        raise TaskDataError(
            f"timestamp {bad.isoformat()} is not a whole number of hours after the first "
            f"({start.isoformat()}); the series must be hourly: aggregate it to one row per hour"
        )
    positions = (offsets // hour).astype(np.int64)
    values = np.full(int(positions[-1]) + 1, np.nan, dtype=np.float64)
    values[positions] = series.to_numpy(dtype=np.float64)
    return HourlyGrid(start=start, values=values)


def complete_windows(present: BoolArray, window: int) -> IntArray:
    """Grid positions ``t`` where every hour from ``t - window`` to ``t`` is present.

    These are the hours that can be a target: their whole lag window (``window`` hours
    before) and the hour itself are all there, so no example spans a gap.
    """
    if window < 0:
        raise ValueError("window must be >= 0")
    counts = np.concatenate(([0], np.cumsum(present, dtype=np.int64)))
    targets = np.arange(window, present.size, dtype=np.int64)
    full = counts[targets + 1] - counts[targets - window] == window + 1
    found: IntArray = targets[full]
    return found


def lag_features(values: FloatArray, targets: IntArray, lags: tuple[int, ...]) -> FloatArray:
    """One row per target: ``values[t - lag]`` for each lag, in the order of ``lags``."""
    if targets.size == 0:
        return np.empty((0, len(lags)), dtype=np.float64)
    columns = np.asarray(lags, dtype=np.int64)
    rows: FloatArray = values[targets[:, None] - columns[None, :]]
    return rows


def calendar_features(times: pd.DatetimeIndex) -> FloatArray:
    """Hour of day and day of week (Monday = 0) as sin/cos pairs, one row per time.

    Columns: ``sin(2π·h/24), cos(2π·h/24), sin(2π·d/7), cos(2π·d/7)`` where ``h`` is the
    hour of day (with minutes as a fraction) and ``d`` the day of week, both in UTC.
    """
    hours = np.asarray(times.hour + times.minute / 60.0, dtype=np.float64)
    days = np.asarray(times.day_of_week, dtype=np.float64)
    hour_angle = 2.0 * math.pi * hours / 24.0
    day_angle = 2.0 * math.pi * days / 7.0
    return np.column_stack(
        (np.sin(hour_angle), np.cos(hour_angle), np.sin(day_angle), np.cos(day_angle))
    ).astype(np.float64)


def check_counts(grid: HourlyGrid, column: str) -> None:
    """Refuse negative values: the task forecasts counts (``log1p`` needs ``>= 0``).

    Raises:
        TaskDataError: a value is below zero (names the first such hour).
    """
    negative = grid.present & (np.nan_to_num(grid.values, nan=0.0) < 0)
    if negative.any():
        first = int(np.argmax(negative))
        when = grid.times(np.array([first], dtype=np.int64))[0]
        raise TaskDataError(
            f"column {column!r} has {int(negative.sum())} negative values (first "
            f"{grid.values[first]:g} at {when.isoformat()}); this task forecasts counts, "
            f"which are >= 0: map a count column or correct the data"
        )


def _read_columns(source: SeriesSource) -> pd.DataFrame:
    where = f"dataset {source.dataset_id!r}"
    path = source.path
    if not path.is_file():
        raise TaskDataError(
            f"{where}: file {path} does not exist or is not a file; check the dataset's path "
            f"in the node config"
        )
    wanted = [source.timestamp_column, source.value_column]
    try:
        if source.format == "csv":
            header = list(pd.read_csv(path, nrows=0).columns)
        else:
            header = list(pq.read_schema(path).names)
    except pd.errors.EmptyDataError as exc:
        raise TaskDataError(f"{where}: {path} is empty; expected a header row") from exc
    except (OSError, ValueError) as exc:
        raise TaskDataError(f"{where}: cannot read {path} as {source.format}: {exc}") from exc
    missing = [c for c in wanted if c not in header]
    if missing:
        raise TaskDataError(
            f"{where}: {path} has no column {missing[0]!r} (it has: "
            f"{', '.join(map(str, header))}); fix the dataset's series mapping "
            f"(timestamp_column, value_column) in the node config"
        )
    try:
        if source.format == "csv":
            return pd.read_csv(path, usecols=wanted, dtype=str, keep_default_na=True)
        return pd.read_parquet(path, columns=wanted)
    except (OSError, ValueError) as exc:
        raise TaskDataError(f"{where}: cannot read {path} as {source.format}: {exc}") from exc


def _parse_times(column: pd.Series, name: str, where: str) -> pd.DatetimeIndex:
    _refuse_empty(column, name, where, "timestamp")
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        parsed = column.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(column.dtype):
        parsed = column.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        raise TaskDataError(
            f"{where}: column {name!r} holds {column.dtype} values, not times; map a timestamp "
            f"column (ISO 8601 text or a timestamp/date type)"
        )
    else:
        try:
            parsed = pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce")
        except (TypeError, ValueError):
            parsed = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
        bad = parsed.isna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise TaskDataError(
                f"{where}: column {name!r} data row {row + 1} holds {column.iloc[row]!r}, which is "
                f"not an ISO 8601 time (for example 2024-01-31T13:00:00 or "
                f"2024-01-31T13:00:00+13:00)"
            )
    return pd.DatetimeIndex(parsed)


def _parse_values(column: pd.Series, name: str, where: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(column.dtype):
        raise TaskDataError(f"{where}: column {name!r} holds booleans; map a numeric column")
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise TaskDataError(
            f"{where}: column {name!r} data row {row + 1} holds {column.iloc[row]!r}, which is "
            f"not a number; map a numeric column or correct the data (leave the cell empty for a "
            f"missing hour)"
        )
    return numbers


def _refuse_empty(column: pd.Series, name: str, where: str, what: str) -> None:
    empty = column.isna()
    if empty.any():
        row = int(np.argmax(empty.to_numpy()))
        raise TaskDataError(
            f"{where}: column {name!r} data row {row + 1} has no {what}; every row needs one "
            f"(remove the row or fill it in)"
        )
