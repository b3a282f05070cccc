"""Conversions between the domain types and the ``connector.v1`` wire messages.

``*_to_pb`` never fails; ``*_from_pb`` validates what a caller sent and raises
``INVALID_ARGUMENT`` naming the field.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from connector.datasets import (
    COLUMN_TYPES,
    DATASET_FORMATS,
    Column,
    Dataset,
    DataSource,
    Offer,
    is_valid_id,
)
from connector.errors import ConnectorError, invalid_argument
from connector.policy import PolicyError, normalize_offer_policy
from connector.v1 import dataset_pb2

MAX_TEXT = 4096
MAX_KEYWORDS = 64
MAX_COLUMNS = 1024


def timestamp(value: datetime | None) -> Timestamp | None:
    """A protobuf Timestamp, or None."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def offer_to_pb(offer: Offer, *, public: bool) -> dataset_pb2.Offer:
    """The wire form of an offer; ``public`` hides provider-only fields."""
    message = dataset_pb2.Offer(
        id=offer.id,
        dataset_id=offer.dataset_id,
        policy_json=json.dumps(offer.policy, sort_keys=True, separators=(",", ":")),
        auto_agree=False if public else offer.auto_agree,
    )
    created = timestamp(offer.create_time)
    if created is not None:
        message.create_time.CopyFrom(created)
    return message


def dataset_to_pb(dataset: Dataset, *, public: bool) -> dataset_pb2.Dataset:
    """The wire form of a dataset; ``public`` (protocol API) hides where rows live."""
    message = dataset_pb2.Dataset(
        id=dataset.id,
        title=dataset.title,
        description=dataset.description,
        keywords=list(dataset.keywords),
        format=dataset.format,
        columns=[
            dataset_pb2.Column(name=c.name, type=c.type, description=c.description, unit=c.unit)
            for c in dataset.columns
        ],
        offers=[offer_to_pb(o, public=public) for o in dataset.offers],
    )
    if not public:
        if dataset.source.path:
            message.source.path = dataset.source.path
        elif dataset.source.sql_table:
            message.source.sql_table = dataset.source.sql_table
    for field, value in (
        ("create_time", dataset.create_time),
        ("update_time", dataset.update_time),
    ):
        stamp = timestamp(value)
        if stamp is not None:
            getattr(message, field).CopyFrom(stamp)
    return message


def offer_from_pb(message: dataset_pb2.Offer, *, field: str = "offer") -> Offer:
    """Validate and convert an offer a caller sent."""
    if not is_valid_id(message.id):
        raise invalid_argument(
            f"offer id {message.id!r} must be 1-128 of a-z, 0-9, '.', '_', '-'", f"{field}.id"
        )
    if not is_valid_id(message.dataset_id):
        raise invalid_argument("offer needs the id of its dataset", f"{field}.dataset_id")
    try:
        raw: Any = json.loads(message.policy_json)
    except RecursionError as exc:
        raise invalid_argument(
            "policy_json nests too deeply", f"{field}.policy_json", "POLICY_INVALID"
        ) from exc
    except json.JSONDecodeError as exc:
        raise invalid_argument(
            f"policy_json is not JSON: {exc.msg} at {exc.pos}",
            f"{field}.policy_json",
            "POLICY_INVALID",
        ) from exc
    try:
        policy = normalize_offer_policy(raw, message.id)
    except PolicyError as exc:
        path = f"{field}.policy_json" + (f".{exc.path}" if exc.path else "")
        raise invalid_argument(f"policy: {exc.message}", path, "POLICY_INVALID") from exc
    return Offer(
        id=message.id, dataset_id=message.dataset_id, policy=policy, auto_agree=message.auto_agree
    )


def dataset_from_pb(message: dataset_pb2.Dataset, *, field: str = "dataset") -> Dataset:
    """Validate and convert a dataset a caller sent (with its offers)."""
    if not is_valid_id(message.id):
        raise invalid_argument(
            f"dataset id {message.id!r} must be 1-128 of a-z, 0-9, '.', '_', '-'", f"{field}.id"
        )
    if not message.title.strip():
        raise invalid_argument("a dataset needs a title", f"{field}.title")
    for name, text in (("title", message.title), ("description", message.description)):
        if len(text) > MAX_TEXT:
            raise invalid_argument(
                f"{name} is longer than {MAX_TEXT} characters", f"{field}.{name}"
            )
    if len(message.keywords) > MAX_KEYWORDS:
        raise invalid_argument(f"at most {MAX_KEYWORDS} keywords", f"{field}.keywords")
    if message.format not in DATASET_FORMATS:
        raise invalid_argument(
            f"format must be one of {', '.join(DATASET_FORMATS)}", f"{field}.format"
        )
    location = message.source.WhichOneof("location")
    if message.format == "sql" and (location != "sql_table" or not message.source.sql_table):
        raise invalid_argument("format sql needs source.sql_table", f"{field}.source")
    if message.format != "sql" and (location != "path" or not message.source.path):
        raise invalid_argument(f"format {message.format} needs source.path", f"{field}.source")
    if not message.columns or len(message.columns) > MAX_COLUMNS:
        raise invalid_argument(f"a dataset needs 1-{MAX_COLUMNS} columns", f"{field}.columns")
    columns: list[Column] = []
    seen: set[str] = set()
    for index, column in enumerate(message.columns):
        if not column.name:
            raise invalid_argument("a column needs a name", f"{field}.columns[{index}].name")
        if column.name in seen:
            raise invalid_argument(
                f"column name {column.name!r} appears twice", f"{field}.columns[{index}].name"
            )
        seen.add(column.name)
        if column.type not in COLUMN_TYPES:
            raise invalid_argument(
                f"column type must be one of {', '.join(COLUMN_TYPES)}",
                f"{field}.columns[{index}].type",
            )
        columns.append(Column(column.name, column.type, column.description, column.unit))
    offers: list[Offer] = []
    for index, offer in enumerate(message.offers):
        if offer.dataset_id and offer.dataset_id != message.id:
            raise invalid_argument(
                "an offer inside a dataset must name that dataset (or leave dataset_id empty)",
                f"{field}.offers[{index}].dataset_id",
            )
        with_dataset = dataset_pb2.Offer()
        with_dataset.CopyFrom(offer)
        with_dataset.dataset_id = message.id
        offers.append(offer_from_pb(with_dataset, field=f"{field}.offers[{index}]"))
    return Dataset(
        id=message.id,
        title=message.title.strip(),
        description=message.description,
        keywords=tuple(message.keywords),
        format=message.format,
        source=DataSource(path=message.source.path, sql_table=message.source.sql_table),
        columns=tuple(columns),
        offers=tuple(sorted(offers, key=lambda o: o.id)),
    )


__all__ = [
    "ConnectorError",
    "dataset_from_pb",
    "dataset_to_pb",
    "offer_from_pb",
    "offer_to_pb",
    "timestamp",
]
