"""Tests for a dataset's ``series`` mapping (node.config) and resolving it for training
tasks (node.training_data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.identity import init_ca
from federation.tasks import ForecastExamples, ForecastTask, SeriesSource
from node.config import ConfigError, LoadedConfig, SeriesConfig, load_config
from node.setup import NodeInit
from node.training_data import series_source

COLUMNS = [
    {"name": "timestamp", "type": "timestamp"},
    {"name": "count", "type": "integer"},
]


def _dataset(**overrides: Any) -> dict[str, Any]:
    dataset: dict[str, Any] = {
        "id": "pedestrians",
        "title": "Pedestrian counts",
        "format": "csv",
        "path": "data/counts.csv",
        "columns": COLUMNS,
    }
    dataset.update(overrides)
    return dataset


def _write(folder: Path, *datasets: dict[str, Any]) -> Path:
    document = {
        "node": {"name": "city-a", "participant_id": "urn:hanse:city-a"},
        "tls": {"cert": "tls/node.crt", "key": "tls/node.key", "trust_bundle": "tls/ca.crt"},
        "datasets": list(datasets),
    }
    path = folder / "hanse.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _loaded(folder: Path, *datasets: dict[str, Any]) -> LoadedConfig:
    return load_config(_write(folder, *datasets))


def _config_refused(folder: Path, *datasets: dict[str, Any]) -> ConfigError:
    path = _write(folder, *datasets)
    before = path.read_text(encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert path.read_text(encoding="utf-8") == before
    return raised.value


def _source_refused(loaded: LoadedConfig, dataset_id: str) -> ConfigError:
    before = loaded.model.model_dump()
    with pytest.raises(ConfigError) as raised:
        series_source(loaded, dataset_id)
    assert loaded.model.model_dump() == before
    return raised.value


# --- valid mappings ------------------------------------------------------------------------


def test_explicit_series_maps_to_a_source_resolved_against_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    columns = [*COLUMNS, {"name": "cyclists", "type": "float"}]
    series = {"timestamp_column": "timestamp", "value_column": "cyclists"}
    loaded = _loaded(tmp_path, _dataset(columns=columns, series=series, format="parquet"))
    monkeypatch.chdir(tmp_path.parent)

    # Execute
    source = series_source(loaded, "pedestrians")

    # Assert
    assert source == SeriesSource(
        dataset_id="pedestrians",
        format="parquet",
        path=(tmp_path / "data" / "counts.csv").resolve(),
        timestamp_column="timestamp",
        value_column="cyclists",
    )
    assert source.path.is_absolute()


def test_series_is_inferred_from_one_timestamp_and_one_numeric_column(tmp_path: Path) -> None:
    # Prepare
    columns = [*COLUMNS, {"name": "sensor", "type": "string"}]
    loaded = _loaded(tmp_path, _dataset(columns=columns))

    # Execute
    source = series_source(loaded, "pedestrians")

    # Assert
    assert loaded.model.datasets[0].series is None
    assert (source.timestamp_column, source.value_column) == ("timestamp", "count")


def test_date_and_integer_columns_are_accepted(tmp_path: Path) -> None:
    # Prepare
    columns = [{"name": "day", "type": "date"}, {"name": "n", "type": "integer"}]
    series = {"timestamp_column": "day", "value_column": "n"}

    # Execute
    loaded = _loaded(tmp_path, _dataset(columns=columns, series=series))

    # Assert
    assert loaded.model.datasets[0].series_mapping() == SeriesConfig(
        timestamp_column="day", value_column="n"
    )


def test_absolute_path_is_kept(tmp_path: Path) -> None:
    # Prepare
    absolute = tmp_path / "elsewhere" / "counts.csv"
    loaded = _loaded(tmp_path, _dataset(path=str(absolute)))

    # Execute
    source = series_source(loaded, "pedestrians")

    # Assert
    assert source.path == absolute


def test_node_init_with_a_sensor_gives_a_series_the_task_reads(tmp_path: Path) -> None:
    # Prepare
    init_ca(tmp_path / "pki")
    loaded = NodeInit(
        name="city-a",
        pki_dir=tmp_path / "pki",
        out_dir=tmp_path / "city-a",
        sensors=["107 Quay Street"],
    ).write()
    dataset_id = loaded.model.datasets[0].id

    # Execute
    source = series_source(loaded, dataset_id)
    data = ForecastTask().load(source)

    # Assert
    assert source.format == "csv"
    assert (source.timestamp_column, source.value_column) == ("timestamp", "count")
    assert source.path == (tmp_path / "city-a" / "datasets" / f"{dataset_id}.csv").resolve()
    assert isinstance(data.train, ForecastExamples)
    assert isinstance(data.test, ForecastExamples)
    assert len(data.train) > 50_000
    assert len(data.test) == 4 * 168


# --- refusals in the config ----------------------------------------------------------------


def test_series_naming_an_undeclared_column_is_refused(tmp_path: Path) -> None:
    # Prepare
    series = {"timestamp_column": "timestamp", "value_column": "cnt"}

    # Execute
    error = _config_refused(tmp_path, _dataset(series=series))

    # Assert
    assert error.field == "datasets[0]"
    assert "series.value_column: 'cnt' is not a declared column" in error.message
    assert "declared: timestamp, count" in error.message


def test_timestamp_column_of_another_type_is_refused(tmp_path: Path) -> None:
    # Prepare
    columns = [{"name": "when", "type": "string"}, {"name": "count", "type": "integer"}]
    series = {"timestamp_column": "when", "value_column": "count"}

    # Execute
    error = _config_refused(tmp_path, _dataset(columns=columns, series=series))

    # Assert
    assert "series.timestamp_column: column 'when' has type string" in error.message
    assert "needs type timestamp or date" in error.message


def test_value_column_of_another_type_is_refused(tmp_path: Path) -> None:
    # Prepare
    columns = [*COLUMNS, {"name": "open", "type": "boolean"}]
    series = {"timestamp_column": "timestamp", "value_column": "open"}

    # Execute
    error = _config_refused(tmp_path, _dataset(columns=columns, series=series))

    # Assert
    assert "series.value_column: column 'open' has type boolean" in error.message
    assert "needs type integer or float" in error.message


def test_series_on_an_sql_dataset_is_refused(tmp_path: Path) -> None:
    # Prepare
    series = {"timestamp_column": "timestamp", "value_column": "count"}
    dataset = _dataset(format="sql", sql_table="counts", series=series)
    del dataset["path"]

    # Execute
    error = _config_refused(tmp_path, dataset)

    # Assert
    assert "only a csv or parquet dataset can be read as a time series" in error.message
    assert "format sql" in error.message


@pytest.mark.parametrize(
    ("series", "field"),
    [
        ({"timestamp_column": "timestamp"}, "datasets[0].series.value_column"),
        (
            {"timestamp_column": "timestamp", "value_column": "count", "unit": "x"},
            "datasets[0].series.unit",
        ),
        ({"timestamp_column": "", "value_column": "count"}, "datasets[0].series.timestamp_column"),
    ],
)
def test_malformed_series_section_is_refused(
    tmp_path: Path, series: dict[str, str], field: str
) -> None:
    # Execute
    error = _config_refused(tmp_path, _dataset(series=series))

    # Assert
    assert error.field == field


# --- refusals when resolving ---------------------------------------------------------------


def test_unknown_dataset_is_refused_listing_the_declared_ones(tmp_path: Path) -> None:
    # Prepare
    loaded = _loaded(tmp_path, _dataset(), _dataset(id="cyclists"))

    # Execute
    error = _source_refused(loaded, "traffic")

    # Assert
    assert error.field == "datasets"
    assert "no dataset 'traffic'" in error.message
    assert "datasets: pedestrians, cyclists" in error.message


def test_sql_dataset_cannot_be_a_series(tmp_path: Path) -> None:
    # Prepare
    dataset = _dataset(format="sql", sql_table="counts")
    del dataset["path"]
    loaded = _loaded(tmp_path, dataset)

    # Execute
    error = _source_refused(loaded, "pedestrians")

    # Assert
    assert error.field == "datasets[0].format"
    assert "training tasks read csv or parquet files" in error.message


@pytest.mark.parametrize(
    "columns",
    [
        [*COLUMNS, {"name": "cyclists", "type": "float"}],
        [*COLUMNS, {"name": "recorded", "type": "timestamp"}],
        [{"name": "count", "type": "integer"}],
    ],
)
def test_dataset_without_an_inferable_series_is_refused(
    tmp_path: Path, columns: list[dict[str, str]]
) -> None:
    # Prepare
    loaded = _loaded(tmp_path, _dataset(columns=columns))

    # Execute
    error = _source_refused(loaded, "pedestrians")

    # Assert
    assert error.field == "datasets[0].series"
    assert "no series mapping and none can be inferred" in error.message
    assert "timestamp_column" in error.message
