"""Tests for reading hourly series and building forecasting features (federation.tasks.features)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from federation.tasks import SeriesSource, TaskDataError
from federation.tasks.features import (
    HourlyGrid,
    SiteScale,
    calendar_features,
    check_counts,
    complete_windows,
    hourly_grid,
    lag_features,
    read_series,
)


def _csv(path: Path, text: str, *, dataset_id: str = "counts") -> SeriesSource:
    path.write_text(text, encoding="utf-8")
    return SeriesSource(dataset_id, "csv", path, "timestamp", "count")


def _refused(source: SeriesSource) -> str:
    before = source.path.read_bytes() if source.path.is_file() else None
    with pytest.raises(TaskDataError) as raised:
        read_series(source)
    after = source.path.read_bytes() if source.path.is_file() else None
    assert after == before  # the file is only read
    return str(raised.value)


# --- reading -------------------------------------------------------------------------------


def test_read_series_sorts_and_keeps_the_last_row_of_a_duplicated_hour(tmp_path: Path) -> None:
    # Prepare
    source = _csv(
        tmp_path / "c.csv",
        "timestamp,count\n"
        "2024-01-01T02:00:00,3\n"
        "2024-01-01T00:00:00,1\n"
        "2024-01-01T01:00:00,2\n"
        "2024-01-01T00:00:00,10\n",
    )

    # Execute
    series = read_series(source)

    # Assert
    assert list(series.index) == [
        pd.Timestamp("2024-01-01T00:00:00", tz="UTC"),
        pd.Timestamp("2024-01-01T01:00:00", tz="UTC"),
        pd.Timestamp("2024-01-01T02:00:00", tz="UTC"),
    ]
    assert series.tolist() == [10.0, 2.0, 3.0]
    assert series.dtype == np.float64


def test_naive_times_are_utc_and_aware_times_are_converted(tmp_path: Path) -> None:
    # Prepare
    naive = _csv(tmp_path / "naive.csv", "timestamp,count\n2024-01-01T00:00:00,5\n")
    aware = _csv(tmp_path / "aware.csv", "timestamp,count\n2024-01-01T13:00:00+13:00,5\n")

    # Execute
    from_naive = read_series(naive)
    from_aware = read_series(aware)

    # Assert
    assert from_naive.index.equals(from_aware.index)
    assert from_naive.index[0] == pd.Timestamp("2024-01-01T00:00:00", tz="UTC")


def test_empty_values_are_absent_hours_not_zeros(tmp_path: Path) -> None:
    # Prepare
    source = _csv(
        tmp_path / "c.csv",
        "timestamp,count\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,\n2024-01-01T02:00:00,3\n",
    )

    # Execute
    grid = hourly_grid(read_series(source))

    # Assert
    assert grid.present.tolist() == [True, False, True]
    assert grid.values[0] == 1.0
    assert grid.values[2] == 3.0


def test_missing_file_is_refused(tmp_path: Path) -> None:
    # Prepare
    source = SeriesSource("counts", "csv", tmp_path / "absent.csv", "timestamp", "count")

    # Execute
    message = _refused(source)

    # Assert
    assert "absent.csv does not exist" in message
    assert "'counts'" in message
    assert not source.path.exists()


def test_missing_column_is_refused_naming_the_columns_there(tmp_path: Path) -> None:
    # Prepare
    source = _csv(tmp_path / "c.csv", "time,count\n2024-01-01T00:00:00,1\n")

    # Execute
    message = _refused(source)

    # Assert
    assert "no column 'timestamp'" in message
    assert "it has: time, count" in message
    assert "timestamp_column" in message


def test_non_numeric_value_is_refused_naming_the_row(tmp_path: Path) -> None:
    # Prepare
    source = _csv(
        tmp_path / "c.csv",
        "timestamp,count\n2024-01-01T00:00:00,1\n2024-01-01T01:00:00,many\n",
    )

    # Execute
    message = _refused(source)

    # Assert
    assert "data row 2 holds 'many'" in message
    assert "not a number" in message


def test_infinite_value_is_refused(tmp_path: Path) -> None:
    # Prepare
    source = _csv(tmp_path / "c.csv", "timestamp,count\n2024-01-01T00:00:00,inf\n")

    # Execute
    message = _refused(source)

    # Assert
    assert "data row 1 holds inf" in message
    assert "finite" in message


def test_value_that_is_not_a_time_is_refused(tmp_path: Path) -> None:
    # Prepare
    source = _csv(tmp_path / "c.csv", "timestamp,count\nyesterday,1\n")

    # Execute
    message = _refused(source)

    # Assert
    assert "'yesterday'" in message
    assert "ISO 8601" in message


def test_row_without_timestamp_is_refused(tmp_path: Path) -> None:
    # Prepare
    source = _csv(tmp_path / "c.csv", "timestamp,count\n2024-01-01T00:00:00,1\n,2\n")

    # Execute
    message = _refused(source)

    # Assert
    assert "data row 2 has no timestamp" in message


@pytest.mark.parametrize(
    "text", ["", "timestamp,count\n", "timestamp,count\n2024-01-01T00:00:00,\n"]
)
def test_file_without_rows_is_refused(tmp_path: Path, text: str) -> None:
    # Prepare
    source = _csv(tmp_path / "c.csv", text)

    # Execute
    message = _refused(source)

    # Assert
    assert "'counts'" in message
    assert "empty" in message or "no row" in message


def test_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "c.parquet"
    path.write_bytes(b"timestamp,count\n2024-01-01T00:00:00,1\n")
    source = SeriesSource("counts", "parquet", path, "timestamp", "count")

    # Execute
    message = _refused(source)

    # Assert
    assert "cannot read" in message
    assert "as parquet" in message


def test_parquet_typed_and_text_columns_read_like_csv(tmp_path: Path) -> None:
    # Prepare
    times = pd.date_range("2024-01-01", periods=3, freq="h")
    typed = tmp_path / "typed.parquet"
    pd.DataFrame({"timestamp": times, "count": [1, 2, 3]}).to_parquet(typed)
    text = tmp_path / "text.parquet"
    pd.DataFrame(
        {"timestamp": [t.isoformat() for t in times], "count": ["1", "2", "3"]}
    ).to_parquet(text)
    csv = _csv(
        tmp_path / "c.csv",
        "timestamp,count\n" + "".join(f"{t.isoformat()},{i + 1}\n" for i, t in enumerate(times)),
    )

    # Execute
    from_typed = read_series(SeriesSource("counts", "parquet", typed, "timestamp", "count"))
    from_text = read_series(SeriesSource("counts", "parquet", text, "timestamp", "count"))
    from_csv = read_series(csv)

    # Assert
    pd.testing.assert_series_equal(from_typed, from_csv, check_index_type=False)
    pd.testing.assert_series_equal(from_text, from_csv, check_index_type=False)


def test_parquet_nullable_integers_leave_missing_hours_absent(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "c.parquet"
    counts = pd.array([1, None, 3], dtype="Int64")
    times = pd.date_range("2024-01-01", periods=3, freq="h", tz="Pacific/Auckland")
    pd.DataFrame({"timestamp": times, "count": counts}).to_parquet(path)

    # Execute
    series = read_series(SeriesSource("counts", "parquet", path, "timestamp", "count"))

    # Assert
    assert series.tolist() == [1.0, 3.0]
    assert series.index[0] == pd.Timestamp("2023-12-31T11:00:00", tz="UTC")


def test_parquet_numeric_timestamp_column_is_refused(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "c.parquet"
    pd.DataFrame({"timestamp": [1, 2], "count": [1.0, 2.0]}).to_parquet(path)
    source = SeriesSource("counts", "parquet", path, "timestamp", "count")

    # Execute
    message = _refused(source)

    # Assert
    assert "not times" in message


# --- the hourly grid -----------------------------------------------------------------------


def test_hourly_grid_leaves_holes_for_absent_hours() -> None:
    # Prepare
    index = pd.DatetimeIndex(["2024-01-01T00:00", "2024-01-01T01:00", "2024-01-01T04:00"], tz="UTC")
    series = pd.Series([1.0, 2.0, 5.0], index=index)

    # Execute
    grid = hourly_grid(series)

    # Assert
    assert grid.start == index[0]
    assert grid.present.tolist() == [True, True, False, False, True]
    assert grid.values[[0, 1, 4]].tolist() == [1.0, 2.0, 5.0]
    assert list(grid.times(np.array([4]))) == [index[2]]


def test_hourly_grid_refuses_times_off_the_hour_grid() -> None:
    # Prepare
    index = pd.DatetimeIndex(["2024-01-01T00:00", "2024-01-01T00:30"], tz="UTC")
    series = pd.Series([1.0, 2.0], index=index)

    # Execute
    with pytest.raises(TaskDataError) as raised:
        hourly_grid(series)

    # Assert
    assert "2024-01-01T00:30:00+00:00" in str(raised.value)
    assert "aggregate it to one row per hour" in str(raised.value)
    assert series.tolist() == [1.0, 2.0]


def test_complete_windows_never_span_a_gap() -> None:
    # Prepare: hours 0..9 present except hour 4
    present = np.ones(10, dtype=bool)
    present[4] = False

    # Execute
    targets = complete_windows(present, 2)

    # Assert: a target t needs t-2, t-1 and t
    assert targets.tolist() == [2, 3, 7, 8, 9]


def test_complete_windows_with_a_window_longer_than_the_series_is_empty() -> None:
    # Execute
    targets = complete_windows(np.ones(5, dtype=bool), 168)

    # Assert
    assert targets.size == 0


# --- features ------------------------------------------------------------------------------


def test_lag_features_are_the_values_lags_hours_before() -> None:
    # Prepare
    values = np.arange(10, dtype=np.float64) * 10.0

    # Execute
    rows = lag_features(values, np.array([5, 9], dtype=np.int64), (1, 2, 5))

    # Assert
    assert rows.tolist() == [[40.0, 30.0, 0.0], [80.0, 70.0, 40.0]]


def test_lag_features_of_no_targets_have_one_column_per_lag() -> None:
    # Execute
    rows = lag_features(np.zeros(3), np.array([], dtype=np.int64), (1, 2))

    # Assert
    assert rows.shape == (0, 2)


def test_calendar_features_encode_hour_and_weekday_as_sin_cos() -> None:
    # Prepare: 2024-01-01 was a Monday (day 0); 2024-01-03 a Wednesday (day 2)
    times = pd.DatetimeIndex(["2024-01-01T06:00", "2024-01-03T18:00"], tz="UTC")

    # Execute
    rows = calendar_features(times)

    # Assert
    wednesday = 2 * math.pi * 2 / 7
    expected = [
        [1.0, 0.0, 0.0, 1.0],
        [-1.0, 0.0, math.sin(wednesday), math.cos(wednesday)],
    ]
    np.testing.assert_allclose(rows, expected, atol=1e-12)


def test_site_scale_is_standardised_log1p_and_inverts() -> None:
    # Prepare
    counts = np.array([0.0, 9.0, 99.0, 999.0])

    # Execute
    scale = SiteScale.fit(counts)
    scaled = scale.forward(counts)

    # Assert
    logs = np.log1p(counts)
    assert scale.mean == pytest.approx(logs.mean())
    assert scale.std == pytest.approx(logs.std())
    assert scaled.mean() == pytest.approx(0.0, abs=1e-12)
    assert scaled.std() == pytest.approx(1.0)
    np.testing.assert_allclose(scale.inverse(scaled), counts, atol=1e-9)


def test_site_scale_of_a_constant_series_keeps_unit_std() -> None:
    # Execute
    scale = SiteScale.fit(np.zeros(5))

    # Assert
    assert scale == SiteScale(mean=0.0, std=1.0)
    assert scale.inverse(np.array([-3.0])).tolist() == [0.0]


def test_site_scale_needs_training_hours() -> None:
    # Execute
    with pytest.raises(TaskDataError) as raised:
        SiteScale.fit(np.array([]))

    # Assert
    assert "no training hours" in str(raised.value)


def test_negative_counts_are_refused_naming_the_first() -> None:
    # Prepare
    start = pd.Timestamp("2024-01-01T00:00", tz="UTC")
    grid = HourlyGrid(start=start, values=np.array([1.0, np.nan, -2.0, -1.0]))

    # Execute
    with pytest.raises(TaskDataError) as raised:
        check_counts(grid, "count")

    # Assert
    message = str(raised.value)
    assert "2 negative values" in message
    assert "first -2 at 2024-01-01T02:00:00+00:00" in message
    assert grid.values[2] == -2.0


def test_non_negative_counts_pass() -> None:
    # Prepare
    start = pd.Timestamp("2024-01-01T00:00", tz="UTC")
    grid = HourlyGrid(start=start, values=np.array([0.0, np.nan, 2.0]))

    # Execute
    check_counts(grid, "count")

    # Assert
    assert grid.values[0] == 0.0
