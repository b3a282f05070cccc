"""DSP 2025-1 JSON-LD forms of Hanse wire messages (compact, with the DSP context).

The catalog form validates against ``catalog/catalog-schema.json`` of the Dataspace
Protocol 2025-1. A dataset without offers cannot appear in a DSP catalog
(``hasPolicy`` needs one item), and the node's catalog never lists one.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from connector.v1 import catalog_protocol_pb2, dataset_pb2

DSP_CONTEXT = "https://w3id.org/dspace/2025/1/context.jsonld"
"""The DSP 2025-1 JSON-LD context."""

DISTRIBUTION_FORMAT = "HanseFederated-gRPC"
"""The distribution format: data is used in place, through governed federated training."""


def catalog_id(participant_id: str) -> str:
    """A stable catalog id for a participant."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, participant_id + '#catalog')}"


def service_id(participant_id: str) -> str:
    """A stable id for a participant's protocol endpoint (its DSP DataService)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, participant_id + '#protocol')}"


def endpoint_url(address: str) -> str:
    """The protocol endpoint URL for a host:port."""
    return f"grpcs://{address}"


def dataset_to_dsp(dataset: dataset_pb2.Dataset, participant_id: str) -> dict[str, Any]:
    """A DSP ``Dataset`` (without ``@context``) for a catalog entry."""
    entry: dict[str, Any] = {
        "@id": dataset.id,
        "@type": "Dataset",
        "hasPolicy": [json.loads(o.policy_json) for o in dataset.offers],
        "distribution": [
            {
                "@type": "Distribution",
                "format": DISTRIBUTION_FORMAT,
                "accessService": service_id(participant_id),
            }
        ],
        "dct:title": dataset.title,
    }
    if dataset.description:
        entry["dct:description"] = dataset.description
    if dataset.keywords:
        entry["dcat:keyword"] = list(dataset.keywords)
    if dataset.format:
        entry["dct:format"] = dataset.format
    return entry


def catalog_to_dsp(catalog: catalog_protocol_pb2.Catalog) -> dict[str, Any]:
    """The DSP 2025-1 ``Catalog`` JSON-LD of a catalog."""
    document: dict[str, Any] = {
        "@context": [DSP_CONTEXT],
        "@id": catalog.id or catalog_id(catalog.participant_id),
        "@type": "Catalog",
        "participantId": catalog.participant_id,
        "service": [
            {
                "@id": service_id(catalog.participant_id),
                "@type": "DataService",
                "endpointURL": catalog.endpoint_url,
            }
        ],
    }
    datasets = [dataset_to_dsp(d, catalog.participant_id) for d in catalog.datasets if d.offers]
    if datasets:
        document["dataset"] = datasets
    return document


def dataset_document(dataset: dataset_pb2.Dataset, participant_id: str) -> dict[str, Any]:
    """A standalone DSP ``Dataset`` JSON-LD document (with ``@context``)."""
    return {"@context": [DSP_CONTEXT], **dataset_to_dsp(dataset, participant_id)}
