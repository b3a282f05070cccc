"""Management API against a real node: every refusal is clear and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from connector.errors import ConnectorError
from connector.v1 import dataset_management_pb2 as pb
from connector.v1 import dataset_pb2
from node.client import NodeClient
from tests.harness import Cluster, NodeProcess

pytestmark = pytest.mark.integration

POLICY = {
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}
            ],
        }
    ]
}


def _dataset(dataset_id: str = "bikes", **overrides: object) -> dataset_pb2.Dataset:
    message = dataset_pb2.Dataset(
        id=dataset_id,
        title="Bike counts",
        format="csv",
        columns=[dataset_pb2.Column(name="timestamp", type="timestamp")],
        offers=[dataset_pb2.Offer(id=f"{dataset_id}-research", policy_json=json.dumps(POLICY))],
    )
    message.source.path = "/srv/bikes.csv"
    for key, value in overrides.items():
        setattr(message, key, value)
    return message


def _snapshot(client: NodeClient) -> list[bytes]:
    response = client.call(client.datasets.ListDatasets, pb.ListDatasetsRequest(page_size=500))
    return [d.SerializeToString(deterministic=True) for d in response.datasets]


def _start_city(cluster: Cluster) -> NodeProcess:
    return cluster.start(
        cluster.init(
            "city-a", sensors=("107 Quay Street",), edit={"management": {"max_request_bytes": 4096}}
        )
    )


@pytest.fixture
def city(cluster: Cluster) -> NodeProcess:
    return _start_city(cluster)


@pytest.fixture(scope="module")
def shared_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One node for the refusal cases: each must leave it unchanged anyway."""
    cluster = Cluster(tmp_path_factory.mktemp("refusals"))
    node = _start_city(cluster)
    yield node
    assert node.stop() == 0, node.log()


def test_create_get_delete_dataset_and_offer(city: NodeProcess) -> None:
    with city.client() as client:
        # Execute
        created = client.call(
            client.datasets.CreateDataset, pb.CreateDatasetRequest(dataset=_dataset())
        )
        offer = client.call(
            client.datasets.CreateOffer,
            pb.CreateOfferRequest(
                offer=dataset_pb2.Offer(
                    id="bikes-open", dataset_id="bikes", policy_json=json.dumps(POLICY)
                )
            ),
        )
        fetched = client.call(client.datasets.GetDataset, pb.GetDatasetRequest(dataset_id="bikes"))
        client.call(client.datasets.DeleteOffer, pb.DeleteOfferRequest(offer_id="bikes-open"))
        after_offer_delete = client.call(
            client.datasets.GetDataset, pb.GetDatasetRequest(dataset_id="bikes")
        )
        client.call(client.datasets.DeleteDataset, pb.DeleteDatasetRequest(dataset_id="bikes"))
        remaining = _snapshot(client)

    # Assert
    assert created.dataset.source.path == "/srv/bikes.csv"
    assert created.dataset.create_time.seconds > 0
    assert offer.offer.dataset_id == "bikes"
    assert [o.id for o in fetched.dataset.offers] == ["bikes-open", "bikes-research"]
    assert json.loads(fetched.dataset.offers[0].policy_json)["@id"] == "bikes-open"
    assert [o.id for o in after_offer_delete.dataset.offers] == ["bikes-research"]
    assert len(remaining) == 1


def _offer(
    offer_id: str, dataset_id: str, policy: object = POLICY, raw: str = ""
) -> pb.CreateOfferRequest:
    return pb.CreateOfferRequest(
        offer=dataset_pb2.Offer(
            id=offer_id, dataset_id=dataset_id, policy_json=raw or json.dumps(policy)
        )
    )


UNKNOWN_OPERAND = {
    "permission": [
        {
            "action": "use",
            "constraint": [{"leftOperand": "colour", "operator": "eq", "rightOperand": "red"}],
        }
    ]
}
QUAY = "akl-ped-107-quay-street"

REFUSALS = [
    # label, method, request, code, reason, field
    (
        "unknown dataset",
        "GetDataset",
        pb.GetDatasetRequest(dataset_id="nope"),
        grpc.StatusCode.NOT_FOUND,
        "DATASET_NOT_FOUND",
        "",
    ),
    (
        "delete unknown dataset",
        "DeleteDataset",
        pb.DeleteDatasetRequest(dataset_id="nope"),
        grpc.StatusCode.NOT_FOUND,
        "DATASET_NOT_FOUND",
        "",
    ),
    (
        "malformed id",
        "GetDataset",
        pb.GetDatasetRequest(dataset_id="Bad Id!"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "dataset_id",
    ),
    (
        "duplicate dataset",
        "CreateDataset",
        pb.CreateDatasetRequest(dataset=_dataset(QUAY)),
        grpc.StatusCode.ALREADY_EXISTS,
        "DATASET_ALREADY_EXISTS",
        "",
    ),
    (
        "missing title",
        "CreateDataset",
        pb.CreateDatasetRequest(dataset=_dataset(title="")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "dataset.title",
    ),
    (
        "bad format",
        "CreateDataset",
        pb.CreateDatasetRequest(dataset=_dataset(format="xls")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        "dataset.format",
    ),
    (
        "policy not JSON",
        "CreateOffer",
        _offer("o1", QUAY, raw="{nope"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "POLICY_INVALID",
        "offer.policy_json",
    ),
    (
        "unknown left operand",
        "CreateOffer",
        _offer("o1", QUAY, UNKNOWN_OPERAND),
        grpc.StatusCode.INVALID_ARGUMENT,
        "POLICY_INVALID",
        "offer.policy_json.permission[0].constraint[0].leftOperand",
    ),
    (
        "offer for unknown dataset",
        "CreateOffer",
        _offer("o1", "nope"),
        grpc.StatusCode.NOT_FOUND,
        "DATASET_NOT_FOUND",
        "",
    ),
    (
        "duplicate offer",
        "CreateOffer",
        _offer(f"{QUAY}-fl", QUAY),
        grpc.StatusCode.ALREADY_EXISTS,
        "OFFER_ALREADY_EXISTS",
        "",
    ),
    (
        "oversized request",
        "CreateDataset",
        pb.CreateDatasetRequest(dataset=_dataset(description="x" * 4096)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "REQUEST_TOO_LARGE",
        "",
    ),
    (
        "bad page token",
        "ListDatasets",
        pb.ListDatasetsRequest(page_token="garbage"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "PAGE_TOKEN_INVALID",
        "page_token",
    ),
]


@pytest.mark.parametrize(
    ("label", "method", "request_message", "code", "reason", "field"),
    REFUSALS,
    ids=[case[0] for case in REFUSALS],
)
def test_refusals_are_clear_and_change_nothing(
    shared_city: NodeProcess,
    label: str,
    method: str,
    request_message,
    code: grpc.StatusCode,
    reason: str,
    field: str,
) -> None:
    with shared_city.client() as client:
        # Prepare
        before = _snapshot(client)

        # Execute
        with pytest.raises(ConnectorError) as caught:
            client.call(getattr(client.datasets, method), request_message)
        after = _snapshot(client)

    # Assert
    assert caught.value.code == code, label
    assert caught.value.reason == reason, caught.value
    assert caught.value.message
    if field:
        assert [v.field for v in caught.value.violations] == [field]
    assert after == before, f"{label} changed the store"


def test_request_id_gives_the_first_answer_not_a_second_effect(city: NodeProcess) -> None:
    with city.client() as client:
        # Prepare
        request = pb.CreateDatasetRequest(dataset=_dataset("retry-me"), request_id="req-1")

        # Execute
        first = client.call(client.datasets.CreateDataset, request)
        second = client.call(client.datasets.CreateDataset, request)
        delete = pb.DeleteDatasetRequest(dataset_id="retry-me", request_id="req-2")
        client.call(client.datasets.DeleteDataset, delete)
        again = client.call(client.datasets.DeleteDataset, delete)
        snapshot = _snapshot(client)

    # Assert
    assert second == first
    assert again.dataset_id == "retry-me"
    assert len(snapshot) == 1


def test_cli_dataset_and_offer_commands(city: NodeProcess, tmp_path) -> None:
    from tests.harness import hanse

    # Prepare
    config = str(city.config_path)
    dataset_file = tmp_path / "bikes.yaml"
    dataset_file.write_text(
        "id: bikes\ntitle: Bike counts\nformat: csv\npath: bikes.csv\n"
        "columns:\n  - {name: timestamp, type: timestamp}\n  - {name: count, type: integer}\n",
        encoding="utf-8",
    )
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(POLICY), encoding="utf-8")
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text(
        json.dumps(
            {
                "permission": [
                    {
                        "action": "use",
                        "constraint": [
                            {"leftOperand": "purpose", "operator": "like", "rightOperand": "x"}
                        ],
                    }
                ]
            }
        ),
        encoding="utf-8",
    )

    # Execute
    added = hanse("dataset", "add", str(dataset_file), "--config", config)
    offered = hanse(
        "offer",
        "add",
        "bikes",
        "--id",
        "bikes-research",
        "--policy",
        str(policy_file),
        "--config",
        config,
    )
    refused = hanse(
        "offer",
        "add",
        "bikes",
        "--id",
        "bikes-bad",
        "--policy",
        str(bad_policy),
        "--config",
        config,
    )
    listed = hanse("dataset", "list", "--json", "--config", config)
    shown = hanse("dataset", "show", "bikes", "--dsp", "--config", config)
    missing = hanse("dataset", "show", "nope", "--config", config)

    # Assert
    assert added.returncode == 0, added.stderr
    assert offered.returncode == 0, offered.stderr
    assert refused.returncode == 1
    assert "unknown operator 'like'" in refused.stderr and "[POLICY_INVALID]" in refused.stderr
    ids = {d["id"]: [o["id"] for o in d.get("offers", [])] for d in json.loads(listed.stdout)}
    assert ids["bikes"] == ["bikes-research"]
    assert json.loads(shown.stdout)["hasPolicy"][0]["@id"] == "bikes-research"
    assert missing.returncode == 1 and "[DATASET_NOT_FOUND]" in missing.stderr
    assert str(tmp_path / "bikes.csv") in [
        d.get("source", {}).get("path") for d in json.loads(listed.stdout)
    ]
