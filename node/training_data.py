"""What a training task may read: a configured dataset resolved to its time series.

Tasks never see the node config; the node hands them a :class:`SeriesSource` built
here from the dataset's declaration (file, format and ``series`` column mapping).
"""

from __future__ import annotations

from federation.tasks.base import SeriesSource
from node.config import ConfigError, LoadedConfig


def series_source(loaded: LoadedConfig, dataset_id: str) -> SeriesSource:
    """The time series of dataset ``dataset_id``, its path resolved like every config path.

    Raises:
        ConfigError: no dataset has that id, the dataset is an SQL table, or it has no
            ``series`` mapping and none can be inferred from its columns.
    """
    datasets = loaded.model.datasets
    index = next((i for i, d in enumerate(datasets) if d.id == dataset_id), None)
    if index is None:
        held = ", ".join(d.id for d in datasets) or "none"
        raise ConfigError(
            loaded.path,
            "datasets",
            f"no dataset {dataset_id!r} on this node (datasets: {held}); declare it under "
            f"datasets or use one of the declared ids",
        )
    dataset = datasets[index]
    field = f"datasets[{index}]"
    if dataset.format == "sql" or dataset.path is None:
        raise ConfigError(
            loaded.path,
            f"{field}.format",
            f"dataset {dataset_id!r} is an SQL table; training tasks read csv or parquet files: "
            f"export it to a file and declare that",
        )
    mapping = dataset.series_mapping()
    if mapping is None:
        raise ConfigError(
            loaded.path,
            f"{field}.series",
            f"dataset {dataset_id!r} has no series mapping and none can be inferred (that needs "
            f"exactly one timestamp/date column and one integer/float column); add "
            f"series: {{timestamp_column: ..., value_column: ...}}",
        )
    return SeriesSource(
        dataset_id=dataset.id,
        format=dataset.format,
        path=loaded.resolve(dataset.path),
        timestamp_column=mapping.timestamp_column,
        value_column=mapping.value_column,
    )


__all__ = ["series_source"]
