"""Tests for the DSP 2025-1 JSON-LD forms of catalogs (connector.dsp)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from connector.datasets import Column, Dataset, DataSource, Offer
from connector.dsp import (
    DISTRIBUTION_FORMAT,
    DSP_CONTEXT,
    catalog_id,
    catalog_to_dsp,
    dataset_document,
    endpoint_url,
    service_id,
)
from connector.policy import normalize_offer_policy
from connector.v1 import catalog_protocol_pb2, dataset_pb2
from connector.wire import dataset_to_pb

CATALOG_SCHEMA = "catalog/catalog-schema.json"
PARTICIPANT = "urn:hanse:city-a"

PURPOSE = {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}


def _offer(offer_id: str, dataset_id: str, *constraints: dict[str, Any]) -> Offer:
    raw = {"permission": [{"action": "use", "constraint": list(constraints or [PURPOSE])}]}
    return Offer(offer_id, dataset_id, normalize_offer_policy(raw, offer_id), auto_agree=True)


def _dataset(dataset_id: str, *offers: Offer, **extra: Any) -> dataset_pb2.Dataset:
    dataset = Dataset(
        id=dataset_id,
        title=f"Dataset {dataset_id}",
        format="csv",
        source=DataSource(path=f"/srv/{dataset_id}.csv"),
        columns=(Column("count", "integer"),),
        offers=offers,
        **extra,
    )
    return dataset_to_pb(dataset, public=True)


def _catalog(*datasets: dataset_pb2.Dataset, **fields: Any) -> catalog_protocol_pb2.Catalog:
    values: dict[str, Any] = {
        "participant_id": PARTICIPANT,
        "node_name": "city-a",
        "endpoint_url": endpoint_url("city-a.example:7443"),
    }
    values.update(fields)
    return catalog_protocol_pb2.Catalog(datasets=list(datasets), **values)


def test_catalog_with_datasets_validates(dsp_validate: Any) -> None:
    # Prepare
    catalog = _catalog(
        _dataset(
            "counts",
            _offer("open", "counts"),
            _offer("research", "counts"),
            description="Hourly counts",
            keywords=("mobility", "pedestrians"),
        ),
        _dataset("air", _offer("air-open", "air")),
    )

    # Execute
    document = catalog_to_dsp(catalog)

    # Assert
    dsp_validate(document, CATALOG_SCHEMA)
    assert document["@context"] == [DSP_CONTEXT]
    assert document["@type"] == "Catalog"
    assert document["participantId"] == PARTICIPANT
    assert [d["@id"] for d in document["dataset"]] == ["counts", "air"]
    counts = document["dataset"][0]
    assert [p["@id"] for p in counts["hasPolicy"]] == ["open", "research"]
    assert counts["hasPolicy"][0]["@type"] == "Offer"
    assert counts["dct:title"] == "Dataset counts"
    assert counts["dct:description"] == "Hourly counts"
    assert counts["dcat:keyword"] == ["mobility", "pedestrians"]
    assert counts["dct:format"] == "csv"
    assert counts["distribution"] == [
        {
            "@type": "Distribution",
            "format": DISTRIBUTION_FORMAT,
            "accessService": service_id(PARTICIPANT),
        }
    ]
    assert "/srv/" not in json.dumps(document)


def test_catalog_service_points_at_the_protocol_endpoint(dsp_validate: Any) -> None:
    # Prepare
    catalog = _catalog(_dataset("counts", _offer("open", "counts")))

    # Execute
    document = catalog_to_dsp(catalog)

    # Assert
    dsp_validate(document, CATALOG_SCHEMA)
    assert document["service"] == [
        {
            "@id": service_id(PARTICIPANT),
            "@type": "DataService",
            "endpointURL": "grpcs://city-a.example:7443",
        }
    ]
    assert (
        document["dataset"][0]["distribution"][0]["accessService"]
        == (document["service"][0]["@id"])
    )


def test_datasets_without_offers_are_omitted(dsp_validate: Any) -> None:
    # Prepare
    catalog = _catalog(
        _dataset("bare"),
        _dataset("counts", _offer("open", "counts")),
        _dataset("also-bare"),
    )

    # Execute
    document = catalog_to_dsp(catalog)

    # Assert
    dsp_validate(document, CATALOG_SCHEMA)
    assert [d["@id"] for d in document["dataset"]] == ["counts"]


@pytest.mark.parametrize("datasets", [(), ("bare",)], ids=["empty", "only-without-offers"])
def test_catalog_without_offered_datasets_has_no_dataset_key(
    dsp_validate: Any, datasets: tuple[str, ...]
) -> None:
    # Prepare
    catalog = _catalog(*(_dataset(d) for d in datasets))

    # Execute
    document = catalog_to_dsp(catalog)

    # Assert
    dsp_validate(document, CATALOG_SCHEMA)
    assert "dataset" not in document


def test_explicit_catalog_id_is_kept_and_default_is_stable() -> None:
    # Prepare
    explicit = _catalog(id="urn:uuid:00000000-0000-0000-0000-000000000001")
    implicit = _catalog()

    # Execute
    with_id = catalog_to_dsp(explicit)
    without_id = catalog_to_dsp(implicit)

    # Assert
    assert with_id["@id"] == "urn:uuid:00000000-0000-0000-0000-000000000001"
    assert without_id["@id"] == catalog_id(PARTICIPANT)


def test_dataset_document_validates_as_a_dsp_dataset(dsp_validate: Any) -> None:
    # Prepare
    dataset = _dataset("counts", _offer("open", "counts"))

    # Execute
    document = dataset_document(dataset, PARTICIPANT)

    # Assert
    dsp_validate(document, "catalog/dataset-schema.json")
    assert document["@context"] == [DSP_CONTEXT]
    assert document["@id"] == "counts"
    assert "dct:description" not in document
    assert "dcat:keyword" not in document


def test_ids_are_stable_per_participant() -> None:
    # Prepare
    first, second = "urn:hanse:city-a", "urn:hanse:city-b"

    # Execute
    ids = [catalog_id(first), catalog_id(first), service_id(first), service_id(first)]
    others = [catalog_id(second), service_id(second)]

    # Assert
    assert ids[0] == ids[1]
    assert ids[2] == ids[3]
    assert ids[0] != ids[2]
    assert others[0] != ids[0]
    assert others[1] != ids[2]
    for value in (*ids, *others):
        assert value.startswith("urn:uuid:")
        assert uuid.UUID(value.removeprefix("urn:uuid:")).version == 5


def test_ids_do_not_change_between_releases() -> None:
    # Prepare
    expected = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'urn:hanse:city-a#catalog')}"

    # Execute
    actual = catalog_id("urn:hanse:city-a")

    # Assert
    assert actual == expected


def test_validator_refuses_a_catalog_without_participant_id(dsp_validate: Any) -> None:
    # Prepare
    document = catalog_to_dsp(_catalog(_dataset("counts", _offer("open", "counts"))))
    del document["participantId"]

    # Execute
    with pytest.raises(jsonschema.ValidationError) as raised:
        dsp_validate(document, CATALOG_SCHEMA)

    # Assert
    assert "participantId" in raised.value.message


def test_validator_refuses_a_dataset_without_policies(dsp_validate: Any) -> None:
    # Prepare
    document = catalog_to_dsp(_catalog(_dataset("counts", _offer("open", "counts"))))
    document["dataset"][0]["hasPolicy"] = []

    # Execute
    with pytest.raises(jsonschema.ValidationError) as raised:
        dsp_validate(document, CATALOG_SCHEMA)

    # Assert
    assert raised.value.validator == "minItems"
    assert list(raised.value.absolute_path) == ["dataset", 0, "hasPolicy"]


def test_spec_example_catalog_validates(dsp_validate: Any, dsp_dir: Path) -> None:
    # Prepare
    example = json.loads((dsp_dir / "catalog" / "example" / "catalog.json").read_text("utf-8"))

    # Execute
    dsp_validate(example, CATALOG_SCHEMA)

    # Assert
    assert example["participantId"] == "urn:example:DataProviderA"


def test_catalog_with_numeric_right_operand_validates(dsp_validate: Any) -> None:
    # Prepare
    rounds = {"leftOperand": "maxRounds", "operator": "lteq", "rightOperand": 50}
    catalog = _catalog(_dataset("counts", _offer("open", "counts", PURPOSE, rounds)))

    # Execute
    document = catalog_to_dsp(catalog)

    # Assert
    dsp_validate(document, CATALOG_SCHEMA)
