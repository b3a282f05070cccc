"""Tests for the domain <-> wire conversions (connector.wire)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from connector.datasets import Column, Dataset, DataSource, Offer
from connector.errors import ConnectorError
from connector.policy import normalize_offer_policy
from connector.v1 import dataset_pb2
from connector.wire import (
    MAX_COLUMNS,
    MAX_KEYWORDS,
    MAX_TEXT,
    dataset_from_pb,
    dataset_to_pb,
    offer_from_pb,
    offer_to_pb,
    timestamp,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2025, 3, 2, 8, 30, 15, 250000, tzinfo=UTC)

RAW_POLICY: dict[str, Any] = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}
            ],
        }
    ]
}


def _offer(offer_id: str, *, auto_agree: bool = False, dataset_id: str = "counts") -> Offer:
    return Offer(
        id=offer_id,
        dataset_id=dataset_id,
        policy=normalize_offer_policy(RAW_POLICY, offer_id),
        auto_agree=auto_agree,
    )


def _dataset(**overrides: Any) -> Dataset:
    fields: dict[str, Any] = {
        "id": "counts",
        "title": "Pedestrian counts",
        "format": "csv",
        "source": DataSource(path="/srv/data/counts.csv"),
        "description": "Hourly counts at 20 sites.",
        "keywords": ("mobility", "pedestrians"),
        "columns": (
            Column("site", "string", "Counter site", ""),
            Column("count", "integer", "Pedestrians per hour", "people/h"),
        ),
        "offers": (_offer("open", auto_agree=True), _offer("research")),
    }
    fields.update(overrides)
    return Dataset(**fields)


def _message(**overrides: Any) -> dataset_pb2.Dataset:
    message = dataset_to_pb(_dataset(), public=False)
    for name, value in overrides.items():
        if isinstance(value, list):
            message.ClearField(name)
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


def _refusal(call: Any, *args: Any) -> ConnectorError:
    with pytest.raises(ConnectorError) as raised:
        call(*args)
    return raised.value


def _assert_invalid(error: ConnectorError, field: str, reason: str = "INVALID_ARGUMENT") -> None:
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == reason
    assert [v.field for v in error.violations] == [field]
    assert error.violations[0].description == error.message


# --- round trips ------------------------------------------------------------------------------


def test_dataset_round_trips_through_the_wire() -> None:
    # Prepare
    dataset = _dataset()

    # Execute
    back = dataset_from_pb(dataset_to_pb(dataset, public=False))

    # Assert
    assert back == dataset


def test_sql_dataset_round_trips_through_the_wire() -> None:
    # Prepare
    dataset = _dataset(format="sql", source=DataSource(sql_table="counts"), offers=())

    # Execute
    message = dataset_to_pb(dataset, public=False)
    back = dataset_from_pb(message)

    # Assert
    assert message.source.WhichOneof("location") == "sql_table"
    assert back == dataset


def test_offer_round_trips_through_the_wire() -> None:
    # Prepare
    offer = _offer("research", auto_agree=True)

    # Execute
    back = offer_from_pb(offer_to_pb(offer, public=False))

    # Assert
    assert back == offer


def test_policy_json_is_canonical() -> None:
    # Prepare
    offer = _offer("research")

    # Execute
    message = offer_to_pb(offer, public=False)

    # Assert
    assert message.policy_json == json.dumps(offer.policy, sort_keys=True, separators=(",", ":"))
    assert json.loads(message.policy_json) == offer.policy


def test_times_are_carried_when_set_and_absent_otherwise() -> None:
    # Prepare
    offer = Offer("research", "counts", normalize_offer_policy(RAW_POLICY, "research"), False, T0)
    dated = _dataset(create_time=T0, update_time=T1, offers=(offer,))
    undated = _dataset()

    # Execute
    with_times = dataset_to_pb(dated, public=False)
    without = dataset_to_pb(undated, public=False)

    # Assert
    assert with_times.create_time.ToDatetime(tzinfo=UTC) == T0
    assert with_times.update_time.ToDatetime(tzinfo=UTC) == T1
    assert with_times.offers[0].create_time.ToDatetime(tzinfo=UTC) == T0
    assert not without.HasField("create_time")
    assert not without.HasField("update_time")
    assert not without.offers[0].HasField("create_time")
    assert timestamp(None) is None


def test_public_form_hides_source_and_auto_agree() -> None:
    # Prepare
    dataset = _dataset()

    # Execute
    private = dataset_to_pb(dataset, public=False)
    public = dataset_to_pb(dataset, public=True)

    # Assert
    assert private.source.path == "/srv/data/counts.csv"
    assert [o.auto_agree for o in private.offers] == [True, False]
    assert not public.HasField("source")
    assert "/srv/data" not in str(public)
    assert [o.auto_agree for o in public.offers] == [False, False]
    assert public.title == private.title
    assert [o.policy_json for o in public.offers] == [o.policy_json for o in private.offers]


def test_public_form_hides_sql_table() -> None:
    # Prepare
    dataset = _dataset(format="sql", source=DataSource(sql_table="secret_counts"))

    # Execute
    public = dataset_to_pb(dataset, public=True)

    # Assert
    assert not public.HasField("source")
    assert "secret_counts" not in str(public)


def test_offers_come_back_ordered_by_id_and_named_for_their_dataset() -> None:
    # Prepare
    message = _message()
    offers = list(message.offers)
    message.ClearField("offers")
    for offer in reversed(offers):
        offer.dataset_id = ""
        message.offers.append(offer)

    # Execute
    dataset = dataset_from_pb(message)

    # Assert
    assert [o.id for o in dataset.offers] == ["open", "research"]
    assert {o.dataset_id for o in dataset.offers} == {"counts"}


def test_title_is_stripped_and_policy_normalised() -> None:
    # Prepare
    message = _message(title="  Pedestrian counts  ")
    message.offers[0].policy_json = json.dumps({"@context": "x", **RAW_POLICY})

    # Execute
    dataset = dataset_from_pb(message)

    # Assert
    assert dataset.title == "Pedestrian counts"
    assert dataset.offers[0].policy == normalize_offer_policy(RAW_POLICY, "open")


def test_message_is_not_changed_by_validation() -> None:
    # Prepare
    message = _message()
    message.offers[0].dataset_id = ""
    before = message.SerializeToString()

    # Execute
    dataset_from_pb(message)

    # Assert
    assert message.SerializeToString() == before


# --- dataset refusals -------------------------------------------------------------------------


def _without_source(**overrides: Any) -> dataset_pb2.Dataset:
    message = _message(**overrides)
    message.ClearField("source")
    return message


def _with_sql_table(**overrides: Any) -> dataset_pb2.Dataset:
    message = _message(**overrides)
    message.source.sql_table = "counts"
    return message


def _columns_message(*columns: dataset_pb2.Column) -> dataset_pb2.Dataset:
    message = _message()
    message.ClearField("columns")
    message.columns.extend(columns)
    return message


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (_message(id=""), "dataset.id"),
        (_message(id="Counts"), "dataset.id"),
        (_message(id="x" * 129), "dataset.id"),
        (_message(id="-counts"), "dataset.id"),
        (_message(title=""), "dataset.title"),
        (_message(title=" \t "), "dataset.title"),
        (_message(title="t" * (MAX_TEXT + 1)), "dataset.title"),
        (_message(description="d" * (MAX_TEXT + 1)), "dataset.description"),
        (_message(keywords=["k"] * (MAX_KEYWORDS + 1)), "dataset.keywords"),
        (_message(format=""), "dataset.format"),
        (_message(format="json"), "dataset.format"),
        (_without_source(), "dataset.source"),
        (_with_sql_table(), "dataset.source"),
        (_message(format="sql"), "dataset.source"),
        (_without_source(format="parquet"), "dataset.source"),
        (_columns_message(), "dataset.columns"),
        (
            _columns_message(*[dataset_pb2.Column(name="c", type="string")] * (MAX_COLUMNS + 1)),
            "dataset.columns",
        ),
        (_columns_message(dataset_pb2.Column(type="string")), "dataset.columns[0].name"),
        (
            _columns_message(
                dataset_pb2.Column(name="a", type="string"),
                dataset_pb2.Column(name="b", type="datetime"),
            ),
            "dataset.columns[1].type",
        ),
        (_columns_message(dataset_pb2.Column(name="a")), "dataset.columns[0].type"),
    ],
    ids=[
        "empty-id",
        "upper-case-id",
        "long-id",
        "leading-dash-id",
        "no-title",
        "blank-title",
        "long-title",
        "long-description",
        "too-many-keywords",
        "no-format",
        "unknown-format",
        "csv-without-source",
        "csv-with-sql-table",
        "sql-with-path",
        "parquet-without-source",
        "no-columns",
        "too-many-columns",
        "column-without-name",
        "unknown-column-type",
        "column-without-type",
    ],
)
def test_invalid_dataset_is_refused(message: dataset_pb2.Dataset, field: str) -> None:
    # Prepare
    before = message.SerializeToString()

    # Execute
    error = _refusal(dataset_from_pb, message)

    # Assert
    _assert_invalid(error, field)
    assert message.SerializeToString() == before


def test_limits_themselves_are_accepted() -> None:
    # Prepare
    message = _message(
        id="x" * 128,
        title="t" * MAX_TEXT,
        description="d" * MAX_TEXT,
        keywords=["k"] * MAX_KEYWORDS,
        offers=[],
    )
    message.ClearField("columns")
    message.columns.extend(
        dataset_pb2.Column(name=f"c{i}", type="float") for i in range(MAX_COLUMNS)
    )

    # Execute
    dataset = dataset_from_pb(message)

    # Assert
    assert len(dataset.id) == 128
    assert len(dataset.keywords) == MAX_KEYWORDS
    assert len(dataset.columns) == MAX_COLUMNS


def test_field_prefix_is_used_in_violations() -> None:
    # Prepare
    message = _message(title="")

    # Execute
    error = _refusal(lambda m: dataset_from_pb(m, field="request.dataset"), message)

    # Assert
    _assert_invalid(error, "request.dataset.title")


def test_offer_naming_another_dataset_is_refused() -> None:
    # Prepare
    message = _message()
    message.offers[1].dataset_id = "other"

    # Execute
    error = _refusal(dataset_from_pb, message)

    # Assert
    _assert_invalid(error, "dataset.offers[1].dataset_id")
    assert "must name that dataset" in error.message


def test_offer_with_bad_id_inside_a_dataset_is_refused() -> None:
    # Prepare
    message = _message()
    message.offers[0].id = "Open Offer"

    # Execute
    error = _refusal(dataset_from_pb, message)

    # Assert
    _assert_invalid(error, "dataset.offers[0].id")


def test_offer_with_invalid_policy_inside_a_dataset_names_the_policy_path() -> None:
    # Prepare
    message = _message()
    message.offers[1].policy_json = json.dumps({"permission": [{"constraint": []}]})

    # Execute
    error = _refusal(dataset_from_pb, message)

    # Assert
    _assert_invalid(error, "dataset.offers[1].policy_json.permission[0].action", "POLICY_INVALID")
    assert error.message.startswith("policy: ")


@pytest.mark.parametrize(("data_format", "location"), [("csv", "path"), ("sql", "sql_table")])
def test_empty_source_is_refused(data_format: str, location: str) -> None:
    # Prepare
    message = _message(format=data_format)
    message.ClearField("source")
    setattr(message.source, location, "")

    # Execute
    error = _refusal(dataset_from_pb, message)

    # Assert
    _assert_invalid(error, "dataset.source")


def test_repeated_column_names_are_refused() -> None:
    # Prepare
    message = _columns_message(
        dataset_pb2.Column(name="count", type="integer"),
        dataset_pb2.Column(name="count", type="float"),
    )

    # Execute
    error = _refusal(dataset_from_pb, message)

    # Assert
    _assert_invalid(error, "dataset.columns[1].name")


# --- offer refusals ---------------------------------------------------------------------------


def _offer_message(**overrides: Any) -> dataset_pb2.Offer:
    message = offer_to_pb(_offer("research"), public=False)
    for name, value in overrides.items():
        setattr(message, name, value)
    return message


@pytest.mark.parametrize(
    ("message", "field", "reason"),
    [
        (_offer_message(id=""), "offer.id", "INVALID_ARGUMENT"),
        (_offer_message(id="Research"), "offer.id", "INVALID_ARGUMENT"),
        (_offer_message(dataset_id=""), "offer.dataset_id", "INVALID_ARGUMENT"),
        (_offer_message(dataset_id="no/such"), "offer.dataset_id", "INVALID_ARGUMENT"),
        (_offer_message(policy_json=""), "offer.policy_json", "POLICY_INVALID"),
        (_offer_message(policy_json="{permission: use}"), "offer.policy_json", "POLICY_INVALID"),
        (_offer_message(policy_json="[]"), "offer.policy_json", "POLICY_INVALID"),
        (_offer_message(policy_json="{}"), "offer.policy_json", "POLICY_INVALID"),
        (
            _offer_message(policy_json=json.dumps({"@type": "Agreement", **RAW_POLICY})),
            "offer.policy_json.@type",
            "POLICY_INVALID",
        ),
        (
            _offer_message(
                policy_json=json.dumps(
                    {
                        "permission": [
                            {
                                "action": "use",
                                "constraint": [
                                    {"leftOperand": "colour", "operator": "eq", "rightOperand": "r"}
                                ],
                            }
                        ]
                    }
                )
            ),
            "offer.policy_json.permission[0].constraint[0].leftOperand",
            "POLICY_INVALID",
        ),
    ],
    ids=[
        "empty-id",
        "upper-case-id",
        "no-dataset",
        "bad-dataset",
        "empty-policy",
        "not-json",
        "not-an-object",
        "no-rules",
        "wrong-type",
        "unknown-left-operand",
    ],
)
def test_invalid_offer_is_refused(message: dataset_pb2.Offer, field: str, reason: str) -> None:
    # Prepare
    before = message.SerializeToString()

    # Execute
    error = _refusal(offer_from_pb, message)

    # Assert
    _assert_invalid(error, field, reason)
    assert message.SerializeToString() == before


def test_policy_that_is_not_json_says_where() -> None:
    # Prepare
    message = _offer_message(policy_json='{"permission": [}')

    # Execute
    error = _refusal(offer_from_pb, message)

    # Assert
    assert error.message.startswith("policy_json is not JSON: ")
    assert " at 16" in error.message


def _deep_policy_json(levels: int) -> str:
    constraint = json.dumps({"leftOperand": "purpose", "operator": "eq", "rightOperand": "r"})
    for _ in range(levels):
        constraint = '{"and": [' + constraint + "]}"
    return '{"permission": [{"action": "use", "constraint": [' + constraint + "]}]}"


def test_moderately_deep_policy_is_refused_as_invalid() -> None:
    # Prepare
    message = _offer_message(policy_json=_deep_policy_json(50))

    # Execute
    error = _refusal(offer_from_pb, message)

    # Assert
    _assert_invalid(
        error,
        "offer.policy_json" + ".permission[0].constraint[0]" + ".and[0]" * 8,
        "POLICY_INVALID",
    )


@pytest.mark.parametrize("levels", [300, 2000], ids=["deepcopy", "json-decoder"])
def test_very_deep_policy_is_refused_as_invalid(levels: int) -> None:
    # Prepare
    message = _offer_message(policy_json=_deep_policy_json(levels))

    # Execute
    error = _refusal(offer_from_pb, message)

    # Assert
    assert error.reason == "POLICY_INVALID"


def test_policy_with_list_left_operand_is_refused_as_invalid() -> None:
    # Prepare
    policy = {
        "permission": [
            {
                "action": "use",
                "constraint": [{"leftOperand": ["purpose"], "operator": "eq", "rightOperand": "r"}],
            }
        ]
    }
    message = _offer_message(policy_json=json.dumps(policy))

    # Execute
    error = _refusal(offer_from_pb, message)

    # Assert
    assert error.reason == "POLICY_INVALID"
