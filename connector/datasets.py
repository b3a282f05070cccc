"""Datasets and offers: the metadata a node publishes (never rows).

These are the domain types the stores keep and the services convert to and from
the wire messages in ``connector.v1.dataset_pb2``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

DatasetFormat = Literal["csv", "parquet", "sql"]
"""Where a dataset's rows are stored."""

ColumnType = Literal["string", "integer", "float", "boolean", "timestamp", "date"]
"""Logical type of a column."""

DATASET_FORMATS: tuple[DatasetFormat, ...] = ("csv", "parquet", "sql")
COLUMN_TYPES: tuple[ColumnType, ...] = (
    "string",
    "integer",
    "float",
    "boolean",
    "timestamp",
    "date",
)

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
"""Dataset and offer ids: 1-128 of lower-case letters, digits, '.', '_' and '-'."""


def is_valid_id(value: str) -> bool:
    """Whether ``value`` is a valid dataset or offer id."""
    return bool(ID_PATTERN.match(value))


@dataclass(frozen=True)
class Column:
    """One column of a dataset's schema."""

    name: str
    """Column name as stored."""
    type: ColumnType
    """Logical type."""
    description: str = ""
    """Human-readable description."""
    unit: str = ""
    """Unit of measure, if any."""


@dataclass(frozen=True)
class DataSource:
    """Where the rows live on the node: a file path or an SQL table (exactly one)."""

    path: str = ""
    """CSV or Parquet file on the node."""
    sql_table: str = ""
    """Table in the node's database."""


@dataclass(frozen=True)
class Offer:
    """An ODRL policy under which a dataset may be used."""

    id: str
    """Stable id, unique on the node."""
    dataset_id: str
    """The dataset this offer is for."""
    policy: dict[str, object]
    """DSP 2025-1 compact JSON-LD ``Offer`` (``@type``, ``permission``...)."""
    auto_agree: bool = False
    """Agree requests that satisfy the policy without the operator."""
    create_time: datetime | None = None
    """Set by the store."""


@dataclass(frozen=True)
class Dataset:
    """Metadata of one dataset a node holds."""

    id: str
    """Stable id, unique on the node."""
    title: str
    """Short title."""
    format: DatasetFormat
    """Storage format."""
    source: DataSource
    """Where the rows live (never published)."""
    description: str = ""
    """Longer description."""
    keywords: tuple[str, ...] = ()
    """Search keywords."""
    columns: tuple[Column, ...] = ()
    """Column schema."""
    offers: tuple[Offer, ...] = field(default=())
    """Offers for this dataset, ordered by id."""
    create_time: datetime | None = None
    """Set by the store."""
    update_time: datetime | None = None
    """Set by the store."""
