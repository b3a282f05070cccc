"""DSP 2025-1 contract-negotiation scenarios (the TCK's list) between real node processes.

One federation serves the whole module: the city ``city-a`` (provider), the node
``researcher`` (consumer) and ``lab``, a federation member played by the test itself
through the protocol API (:class:`ScriptedPeer`). Lab holds a negotiation in any state
the test needs: as a consumer of the city it acknowledges the city's agreement and
stops there (the city rests in AGREED); as a provider to the researcher it offers,
acknowledges the acceptance and sends an agreement when told (the researcher rests in
ACCEPTED or VERIFIED). Every test runs its own negotiations, so the tests share the
nodes without touching each other's state.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
import yaml

from connector.errors import ConnectorError, from_rpc_error
from connector.identity import LoadedTLS, channel_credentials, server_credentials
from connector.identity.peer import peer_identity_from_auth_context
from connector.negotiation.messages import (
    DspMessage,
    accepted_event,
    agreement_message,
    build_agreement,
    finalized_event,
    negotiation_ack,
    new_pid,
    offer_message,
    request_message,
    termination_message,
    verification_message,
)
from connector.negotiation.states import NegotiationState
from connector.negotiation.usage import usage_constraints
from connector.signing import sign_agreement
from connector.store import SqlAuditLog, create_engine
from connector.v1 import (
    catalog_protocol_pb2,
    catalog_protocol_pb2_grpc,
    dataset_pb2,
    negotiation_pb2,
    negotiation_protocol_pb2,
    negotiation_protocol_pb2_grpc,
)
from connector.v1 import negotiation_management_pb2 as pb
from tests.harness import Cluster, NodeProcess, hanse

pytestmark = pytest.mark.integration

QUAY = "akl-ped-107-quay-street"
AUTO = f"{QUAY}-fl"
"""The offer ``hanse node init`` writes: agreed without the operator."""
MANUAL = "quay-manual"
EXPIRED = "quay-expired"
FOREIGN = "quay-foreign"
CITY = "urn:hanse:city-a"
RESEARCHER = "urn:hanse:researcher"
LAB = "urn:hanse:lab"
LAB_DATASET = "lab-air-quality"
LAB_OFFER = "lab-air-quality-open"
FINAL = {"FINALIZED", "TERMINATED"}
RESEARCH = {"purpose": "research"}
PROVIDER = negotiation_pb2.NEGOTIATION_ROLE_PROVIDER
Negotiation = negotiation_pb2.Negotiation


def _permission(*constraints: dict[str, Any]) -> dict[str, Any]:
    return {"permission": [{"action": "use", "constraint": list(constraints)}]}


def _purpose_in(*purposes: str) -> dict[str, Any]:
    return {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": list(purposes)}


CITY_OFFERS = [
    {
        "id": MANUAL,
        "auto_agree": False,
        "policy": _permission(_purpose_in("research", "forecasting")),
    },
    {
        "id": EXPIRED,
        "auto_agree": True,
        "policy": _permission(
            _purpose_in("research"),
            {"leftOperand": "dateTime", "operator": "lt", "rightOperand": "2020-01-01T00:00:00Z"},
        ),
    },
    {
        "id": FOREIGN,
        "auto_agree": True,
        "policy": _permission(
            _purpose_in("research"),
            {
                "leftOperand": "assignee",
                "operator": "isAnyOf",
                "rightOperand": ["urn:hanse:someone-else"],
            },
        ),
    },
]
LAB_POLICY = _permission(_purpose_in("research"))


# --- a federation member played by the test ---------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A message a node delivered to the scripted peer."""

    rpc: str
    sender: str
    message: dict[str, Any]
    signature: dict[str, Any] | None


_ACK_STATE = {
    "RequestContract": NegotiationState.REQUESTED,
    "OfferContract": NegotiationState.OFFERED,
    "AcceptOffer": NegotiationState.ACCEPTED,
    "SendAgreement": NegotiationState.AGREED,
    "VerifyAgreement": NegotiationState.VERIFIED,
    "FinalizeAgreement": NegotiationState.FINALIZED,
    "TerminateNegotiation": NegotiationState.TERMINATED,
}


class ScriptedPeer(
    negotiation_protocol_pb2_grpc.NegotiationProtocolServiceServicer,
    catalog_protocol_pb2_grpc.CatalogProtocolServiceServicer,
):
    """A protocol API on loopback with its own federation certificate.

    It records every message a node delivers and acknowledges it with the DSP state the
    message leads to, or answers UNAVAILABLE for the RPCs named in :attr:`refuse` (a
    peer that is not there). Its catalog holds one dataset with one offer.
    """

    def __init__(self, tls: LoadedTLS, participant_id: str) -> None:
        self.tls = tls
        self.participant_id = participant_id
        self.refuse: set[str] = set()
        self.received: list[Received] = []
        self._changed = threading.Condition()
        self._provider_pids: dict[str, str] = {}
        self._server = grpc.server(ThreadPoolExecutor(max_workers=4))
        negotiation_protocol_pb2_grpc.add_NegotiationProtocolServiceServicer_to_server(
            self, self._server
        )
        catalog_protocol_pb2_grpc.add_CatalogProtocolServiceServicer_to_server(self, self._server)
        self.port = self._server.add_secure_port("127.0.0.1:0", server_credentials(tls))
        self._server.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def callback(self) -> str:
        return f"grpcs://{self.address}"

    def stop(self) -> None:
        self._server.stop(grace=None)

    def send(
        self,
        node: NodeProcess,
        rpc: str,
        message: DspMessage,
        *,
        signature: Mapping[str, Any] | None = None,
        message_id: str = "",
    ) -> dict[str, Any]:
        """Deliver ``message`` to ``node`` as this peer; return its ACK."""
        return send(self.tls, node, rpc, message, signature=signature, message_id=message_id)

    def wait_for(self, rpc: str, consumer_pid: str, timeout: float = 20) -> Received:
        """The first ``rpc`` received for ``consumer_pid`` (waits for it)."""

        def found() -> Received | None:
            for item in self.received:
                if item.rpc == rpc and item.message.get("consumerPid") == consumer_pid:
                    return item
            return None

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, timeout)
            result = found()
        assert result is not None, f"no {rpc} for {consumer_pid} within {timeout}s"
        return result

    # --- protocol API ----------------------------------------------------------------------

    def _answer(self, rpc: str, request: Any, context: grpc.ServicerContext) -> dict[str, Any]:
        auth_context = cast(Mapping[str, Iterable[bytes]], context.auth_context())
        peer = peer_identity_from_auth_context(auth_context)
        message = json.loads(request.message_json)
        signature_json = getattr(request, "signature_json", "")
        with self._changed:
            self.received.append(
                Received(
                    rpc,
                    peer.participant_id if peer is not None else "",
                    message,
                    json.loads(signature_json) if signature_json else None,
                )
            )
            self._changed.notify_all()
            consumer_pid = message.get("consumerPid", "")
            provider_pid = message.get("providerPid") or self._provider_pids.setdefault(
                consumer_pid, new_pid()
            )
        if rpc in self.refuse:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{rpc}: the scripted peer is away")
        return negotiation_ack(
            consumer_pid=consumer_pid, provider_pid=provider_pid, state=_ACK_STATE[rpc]
        )

    def RequestContract(self, request: Any, context: grpc.ServicerContext) -> Any:
        ack = self._answer("RequestContract", request, context)
        return negotiation_protocol_pb2.RequestContractResponse(negotiation_json=json.dumps(ack))

    def OfferContract(self, request: Any, context: grpc.ServicerContext) -> Any:
        ack = self._answer("OfferContract", request, context)
        return negotiation_protocol_pb2.OfferContractResponse(negotiation_json=json.dumps(ack))

    def AcceptOffer(self, request: Any, context: grpc.ServicerContext) -> Any:
        ack = self._answer("AcceptOffer", request, context)
        return negotiation_protocol_pb2.AcceptOfferResponse(negotiation_json=json.dumps(ack))

    def SendAgreement(self, request: Any, context: grpc.ServicerContext) -> Any:
        ack = self._answer("SendAgreement", request, context)
        return negotiation_protocol_pb2.SendAgreementResponse(negotiation_json=json.dumps(ack))

    def VerifyAgreement(self, request: Any, context: grpc.ServicerContext) -> Any:
        ack = self._answer("VerifyAgreement", request, context)
        return negotiation_protocol_pb2.VerifyAgreementResponse(negotiation_json=json.dumps(ack))

    def FinalizeAgreement(self, request: Any, context: grpc.ServicerContext) -> Any:
        ack = self._answer("FinalizeAgreement", request, context)
        return negotiation_protocol_pb2.FinalizeAgreementResponse(negotiation_json=json.dumps(ack))

    def TerminateNegotiation(self, request: Any, context: grpc.ServicerContext) -> Any:
        ack = self._answer("TerminateNegotiation", request, context)
        return negotiation_protocol_pb2.TerminateNegotiationResponse(
            negotiation_json=json.dumps(ack)
        )

    def GetNegotiation(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")

    # --- catalog API -----------------------------------------------------------------------

    def GetCatalogDataset(self, request: Any, context: grpc.ServicerContext) -> Any:
        dataset = dataset_pb2.Dataset(
            id=LAB_DATASET,
            title="Air quality",
            format="csv",
            offers=[
                dataset_pb2.Offer(
                    id=LAB_OFFER, dataset_id=LAB_DATASET, policy_json=json.dumps(LAB_POLICY)
                )
            ],
        )
        return catalog_protocol_pb2.GetCatalogDatasetResponse(
            dataset=dataset, participant_id=self.participant_id, endpoint_url=self.callback
        )

    def GetCatalog(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not scripted")


def send(
    tls: LoadedTLS,
    node: NodeProcess,
    rpc: str,
    message: DspMessage,
    *,
    signature: Mapping[str, Any] | None = None,
    message_id: str = "",
) -> dict[str, Any]:
    """Call ``rpc`` of the node's protocol API with ``tls``; its refusal as ConnectorError."""
    fields: dict[str, Any] = {
        "message_id": message_id or f"test-{uuid.uuid4()}",
        "message_json": json.dumps(message.to_json()),
    }
    if signature is not None:
        fields["signature_json"] = json.dumps(signature)
    request = getattr(negotiation_protocol_pb2, f"{rpc}Request")(**fields)
    with grpc.secure_channel(node.protocol, channel_credentials(tls)) as channel:
        stub = negotiation_protocol_pb2_grpc.NegotiationProtocolServiceStub(channel)
        try:
            response = getattr(stub, rpc)(request, timeout=10)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
    ack: dict[str, Any] = json.loads(response.negotiation_json)
    return ack


def refusal(call: Callable[[], object]) -> ConnectorError:
    """The ConnectorError ``call`` raises (fails the test if it succeeds)."""
    with pytest.raises(ConnectorError) as caught:
        call()
    return caught.value


def _refused(
    peer: ScriptedPeer,
    node: NodeProcess,
    rpc: str,
    message: DspMessage,
    signature: Mapping[str, Any] | None = None,
) -> ConnectorError:
    """The node's refusal of ``message`` from ``peer``."""
    with pytest.raises(ConnectorError) as caught:
        peer.send(node, rpc, message, signature=signature)
    return caught.value


# --- the federation -------------------------------------------------------------------------


@dataclass
class Federation:
    cluster: Cluster
    city: NodeProcess
    researcher: NodeProcess
    lab: ScriptedPeer
    intruder: LoadedTLS
    researcher_tls: LoadedTLS


def _edit_yaml(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    cluster = Cluster(tmp_path_factory.mktemp("tck"))
    lab = ScriptedPeer(cluster.identity("lab", LAB), LAB)
    codes: dict[str, int] = {}
    try:
        city_config = cluster.init("city-a", sensors=("107 Quay Street",))
        _edit_yaml(city_config, lambda doc: doc["datasets"][0]["offers"].extend(CITY_OFFERS))
        city = cluster.start(city_config)
        researcher_config = cluster.init("researcher", peers=(city,))
        _edit_yaml(
            researcher_config,
            lambda doc: doc["peers"].append(
                {"name": "lab", "participant_id": LAB, "address": lab.address}
            ),
        )
        researcher = cluster.start(researcher_config)
        yield Federation(
            cluster,
            city,
            researcher,
            lab,
            cluster.identity("intruder", "urn:hanse:intruder"),
            cluster.tls(researcher_config),
        )
    finally:
        lab.stop()
        codes = {node.config_path.parent.name: node.stop() for node in cluster.processes}
    assert codes == {"city-a": 0, "researcher": 0}


# --- management helpers ---------------------------------------------------------------------


def _get(node: NodeProcess, negotiation_id: str) -> Negotiation:
    with node.client() as client:
        return client.call(
            client.negotiations.GetManagedNegotiation,
            pb.GetManagedNegotiationRequest(id=negotiation_id),
        ).negotiation


def _wait(
    node: NodeProcess, negotiation_id: str, states: set[str], timeout: float = 30
) -> Negotiation:
    """The negotiation once it is in one of ``states``; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    with node.client() as client:
        while True:
            found = client.call(
                client.negotiations.GetManagedNegotiation,
                pb.GetManagedNegotiationRequest(id=negotiation_id),
            ).negotiation
            if found.state in states:
                return found
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{negotiation_id} at {node.config_path.parent.name} still {found.state} "
                    f"({found.reason!r}) after {timeout}s, expected {sorted(states)}"
                )
            time.sleep(0.05)


def _provider_side(city: NodeProcess, consumer_pid: str, timeout: float = 30) -> Negotiation:
    """The city's negotiation for ``consumer_pid`` (waits until it exists)."""
    deadline = time.monotonic() + timeout
    while True:
        found = _provider_records(city, consumer_pid)
        if found:
            assert len(found) == 1, found
            return found[0]
        if time.monotonic() > deadline:
            pytest.fail(f"no negotiation for {consumer_pid} at the city after {timeout}s")
        time.sleep(0.05)


def _provider_records(city: NodeProcess, consumer_pid: str) -> list[Negotiation]:
    with city.client() as client:
        listed = client.call(
            client.negotiations.ListNegotiations, pb.ListNegotiationsRequest(page_size=500)
        ).negotiations
    return [n for n in listed if n.consumer_pid == consumer_pid and n.role == PROVIDER]


def _start(
    researcher: NodeProcess,
    offer_id: str,
    *,
    peer: str = "city-a",
    dataset: str = QUAY,
    usage: Mapping[str, Any] = RESEARCH,
) -> Negotiation:
    with researcher.client() as client:
        return client.call(
            client.negotiations.StartNegotiation,
            pb.StartNegotiationRequest(
                peer=peer, dataset_id=dataset, offer_id=offer_id, usage_json=json.dumps(usage)
            ),
        ).negotiation


def _counter(node: NodeProcess, negotiation_id: str, policy: Mapping[str, Any]) -> None:
    with node.client() as client:
        client.call(
            client.negotiations.CounterNegotiation,
            pb.CounterNegotiationRequest(id=negotiation_id, policy_json=json.dumps(policy)),
        )


def _terminate(node: NodeProcess, negotiation_id: str, reason: str) -> Negotiation:
    with node.client() as client:
        return client.call(
            client.negotiations.TerminateManagedNegotiation,
            pb.TerminateManagedNegotiationRequest(id=negotiation_id, reason=reason),
        ).negotiation


def _approve(node: NodeProcess, negotiation_id: str) -> None:
    with node.client() as client:
        client.call(
            client.negotiations.ApproveNegotiation,
            pb.ApproveNegotiationRequest(id=negotiation_id),
        )


def _accept(node: NodeProcess, negotiation_id: str) -> None:
    with node.client() as client:
        client.call(
            client.negotiations.AcceptNegotiation, pb.AcceptNegotiationRequest(id=negotiation_id)
        )


def _audit(node: NodeProcess, *, subject: str = "", kind: str = "") -> list[Any]:
    """The node's audit entries (read from its database, as ``hanse audit list`` does)."""
    engine = create_engine(node.config.database_url())
    try:
        return SqlAuditLog(engine).entries(limit=1000, subject=subject, kind_prefix=kind)
    finally:
        engine.dispose()


def _waiting_request(fed: Federation) -> tuple[Negotiation, Negotiation]:
    """A researcher request for the MANUAL offer, waiting for the city's operator."""
    started = _start(fed.researcher, MANUAL)
    consumer = _wait(fed.researcher, started.id, {"REQUESTED"})
    provider = _wait(fed.city, _provider_side(fed.city, started.id).id, {"REQUESTED"})
    return consumer, provider


def _offered(fed: Federation, policy: Mapping[str, Any]) -> tuple[Negotiation, Negotiation]:
    """A researcher request the city answered with ``policy`` (OFFERED on both sides)."""
    consumer, provider = _waiting_request(fed)
    _counter(fed.city, provider.id, policy)
    consumer = _wait(fed.researcher, consumer.id, {"OFFERED"})
    provider = _wait(fed.city, provider.id, {"OFFERED"})
    return consumer, provider


# --- lab as the city's consumer ---------------------------------------------------------------


def _lab_request(lab: ScriptedPeer, consumer_pid: str, offer_id: str = AUTO) -> DspMessage:
    offer = {
        "@id": offer_id,
        "@type": "Offer",
        "target": QUAY,
        "permission": [{"action": "use", "constraint": usage_constraints(RESEARCH)}],
    }
    return request_message(consumer_pid=consumer_pid, offer=offer, callback_address=lab.callback)


def _city_agreed_with_lab(fed: Federation) -> tuple[Negotiation, Received]:
    """Lab asks the city for the AUTO offer; the city agrees; lab acknowledges: AGREED."""
    consumer_pid = new_pid()
    ack = fed.lab.send(fed.city, "RequestContract", _lab_request(fed.lab, consumer_pid))
    agreement = fed.lab.wait_for("SendAgreement", consumer_pid)
    provider = _wait(fed.city, ack["providerPid"], {"AGREED"})
    return provider, agreement


def _lab_signature(fed: Federation, agreement: Mapping[str, Any], role: str) -> dict[str, str]:
    return sign_agreement(
        agreement, role=role, cert_pem=fed.lab.tls.cert_pem, key_pem=fed.lab.tls.key_pem
    ).to_json()


# --- lab as the researcher's provider --------------------------------------------------------


def _researcher_accepted_lab_offer(fed: Federation) -> Negotiation:
    """The researcher asked lab, lab offered, the researcher accepted: ACCEPTED."""
    started = _start(fed.researcher, LAB_OFFER, peer="lab", dataset=LAB_DATASET)
    requested = _wait(fed.researcher, started.id, {"REQUESTED"})
    offer = {"@id": LAB_OFFER, "@type": "Offer", "target": LAB_DATASET, **LAB_POLICY}
    fed.lab.send(
        fed.researcher,
        "OfferContract",
        offer_message(
            provider_pid=requested.provider_pid, consumer_pid=requested.consumer_pid, offer=offer
        ),
    )
    _wait(fed.researcher, started.id, {"OFFERED"})
    _accept(fed.researcher, started.id)
    return _wait(fed.researcher, started.id, {"ACCEPTED"})


def _lab_agreement(consumer: Negotiation) -> dict[str, Any]:
    return build_agreement(
        agreement_id=new_pid(),
        offer=json.loads(consumer.offer_json),
        assigner=LAB,
        assignee=RESEARCHER,
        target=LAB_DATASET,
        timestamp=datetime.now(UTC),
        extra_constraints=usage_constraints(json.loads(consumer.usage_json)),
    )


# --- 1. happy path with a counter-offer -------------------------------------------------------


def test_counter_offer_accepted_from_the_cli_is_finalized_with_its_terms(
    fed: Federation, tmp_path: Path
) -> None:
    # Prepare: a request waiting for the city's operator; a narrower policy on file.
    consumer, provider = _waiting_request(fed)
    narrower = _permission(_purpose_in("research"))
    policy_file = tmp_path / "narrower.yaml"
    policy_file.write_text(yaml.safe_dump(narrower), encoding="utf-8")
    city_config, researcher_config = str(fed.city.config_path), str(fed.researcher.config_path)

    # Execute
    countered = hanse(
        "contract", "counter", provider.id, "--policy", str(policy_file), "--config", city_config
    )
    offered = _wait(fed.researcher, consumer.id, {"OFFERED"}, timeout=30)
    accepted = hanse("contract", "approve", consumer.id, "--config", researcher_config)
    consumer_done = _wait(fed.researcher, consumer.id, FINAL)
    provider_done = _wait(fed.city, provider.id, FINAL)
    exported = hanse(
        "contract",
        "export",
        consumer.id,
        "--out",
        str(tmp_path / "agreement.json"),
        "--config",
        researcher_config,
    )
    verified = hanse(
        "contract", "verify", str(tmp_path / "agreement.json"), "--config", researcher_config
    )

    # Assert
    assert countered.returncode == 0, countered.stderr
    assert f"negotiation {provider.id}: OFFERING" in countered.stdout
    assert offered.reason == "offer to accept, counter or terminate"
    assert json.loads(offered.offer_json)["permission"] == narrower["permission"]
    assert accepted.returncode == 0, accepted.stderr
    assert f"negotiation {consumer.id}: ACCEPTING" in accepted.stdout
    assert (consumer_done.state, provider_done.state) == ("FINALIZED", "FINALIZED")
    assert exported.returncode == 0, exported.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    signed = json.loads((tmp_path / "agreement.json").read_text(encoding="utf-8"))
    constraints = signed["agreement"]["permission"][0]["constraint"]
    assert _purpose_in("research") in constraints, "the counter-offer's terms"
    assert _purpose_in("research", "forecasting") not in constraints, "not the original offer's"
    assert {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"} in constraints
    assert json.loads(provider_done.agreement_json) == signed
    trail = [e.payload["to"] for e in _audit(fed.city, subject=provider.id, kind="negotiation.st")]
    assert trail == [
        "REQUESTED",
        "OFFERING",
        "OFFERED",
        "ACCEPTED",
        "AGREEING",
        "AGREED",
        "VERIFIED",
        "FINALIZING",
        "FINALIZED",
    ]


# --- 2. consumer counter-request ----------------------------------------------------------------


def test_consumer_counter_request_returns_the_provider_to_requested(
    fed: Federation, tmp_path: Path
) -> None:
    # Prepare: the city offered; the researcher answers with its own terms.
    consumer, provider = _offered(fed, _permission(_purpose_in("research")))
    own_terms = _permission(
        _purpose_in("research"),
        {"leftOperand": "jurisdiction", "operator": "isAnyOf", "rightOperand": ["NZ"]},
    )
    policy_file = tmp_path / "mine.json"
    policy_file.write_text(json.dumps(own_terms), encoding="utf-8")

    # Execute
    countered = hanse(
        "contract",
        "counter",
        consumer.id,
        "--policy",
        str(policy_file),
        "--config",
        str(fed.researcher.config_path),
    )
    back_at_provider = _wait(fed.city, provider.id, {"REQUESTED"})
    back_at_consumer = _wait(fed.researcher, consumer.id, {"REQUESTED"})
    _approve(fed.city, provider.id)
    provider_done = _wait(fed.city, provider.id, FINAL)
    consumer_done = _wait(fed.researcher, consumer.id, FINAL)

    # Assert
    assert countered.returncode == 0, countered.stderr
    assert f"negotiation {consumer.id}: REQUESTING" in countered.stdout
    assert back_at_provider.state == back_at_consumer.state == "REQUESTED"
    on_the_table = json.loads(back_at_provider.offer_json)["permission"][0]["constraint"]
    assert own_terms["permission"][0]["constraint"][1] in on_the_table
    assert (provider_done.state, consumer_done.state) == ("FINALIZED", "FINALIZED")
    agreed = json.loads(consumer_done.agreement_json)["agreement"]["permission"][0]["constraint"]
    assert {"leftOperand": "jurisdiction", "operator": "isAnyOf", "rightOperand": ["NZ"]} in agreed


# --- 3. terminations by either side -------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "by"),
    [("REQUESTED", "provider"), ("OFFERED", "consumer"), ("OFFERED", "provider")],
)
def test_either_side_terminates_from_the_cli_and_the_other_side_learns_why(
    fed: Federation, state: str, by: str
) -> None:
    # Prepare
    if state == "REQUESTED":
        consumer, provider = _waiting_request(fed)
    else:
        consumer, provider = _offered(fed, _permission(_purpose_in("research")))
    own, other = (fed.city, fed.researcher) if by == "provider" else (fed.researcher, fed.city)
    own_id, other_id = (
        (provider.id, consumer.id) if by == "provider" else (consumer.id, provider.id)
    )
    reason = f"{by} ends it in {state}"

    # Execute
    ended = hanse(
        "contract", "terminate", own_id, "--reason", reason, "--config", str(own.config_path)
    )
    mine = _wait(own, own_id, FINAL)
    theirs = _wait(other, other_id, FINAL)

    # Assert
    assert ended.returncode == 0, ended.stderr
    assert f"negotiation {own_id}: TERMINATING" in ended.stdout
    assert (mine.state, theirs.state) == ("TERMINATED", "TERMINATED")
    assert mine.reason == reason
    assert theirs.reason == reason


def test_termination_message_ends_a_waiting_request_at_the_provider(fed: Federation) -> None:
    # Prepare
    consumer, provider = _waiting_request(fed)
    message = termination_message(
        consumer_pid=consumer.consumer_pid,
        provider_pid=consumer.provider_pid,
        code="NO_LONGER_NEEDED",
        reasons=("the study was cancelled",),
    )

    # Execute
    ack = send(fed.researcher_tls, fed.city, "TerminateNegotiation", message)
    shown = hanse("contract", "show", provider.id, "--json", "--config", str(fed.city.config_path))

    # Assert
    assert ack["@type"] == "ContractNegotiation"
    assert (ack["consumerPid"], ack["providerPid"]) == (consumer.consumer_pid, provider.id)
    assert ack["state"] == "TERMINATED"
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["state"] == "TERMINATED"
    assert record["reason"] == "the study was cancelled"
    assert record.get("attempts", 0) == 0, "nothing to send back: the consumer ended it"


def test_consumer_terminates_after_agreed(fed: Federation) -> None:
    # Prepare: the city agreed and lab acknowledged the agreement (AGREED, nothing pending).
    provider, _ = _city_agreed_with_lab(fed)
    message = termination_message(
        consumer_pid=provider.consumer_pid,
        provider_pid=provider.provider_pid,
        reasons=("budget withdrawn",),
    )

    # Execute
    ack = fed.lab.send(fed.city, "TerminateNegotiation", message)
    after = _get(fed.city, provider.id)

    # Assert
    assert ack["state"] == "TERMINATED"
    assert after.state == "TERMINATED"
    assert after.reason == "budget withdrawn"
    assert after.agreement_json, "the agreement stays on record, unfinalized"


def test_consumer_terminates_after_verified_before_finalized_is_acknowledged(
    fed: Federation,
) -> None:
    # Prepare: lab verifies the agreement but does not take the FINALIZED event.
    provider, agreement = _city_agreed_with_lab(fed)
    fed.lab.refuse.add("FinalizeAgreement")
    try:
        signature = _lab_signature(fed, agreement.message["agreement"], "consumer")
        verified = fed.lab.send(
            fed.city,
            "VerifyAgreement",
            verification_message(
                consumer_pid=provider.consumer_pid, provider_pid=provider.provider_pid
            ),
            signature=signature,
        )
        fed.lab.wait_for("FinalizeAgreement", provider.consumer_pid)
        finalizing = _get(fed.city, provider.id)

        # Execute
        ack = fed.lab.send(
            fed.city,
            "TerminateNegotiation",
            termination_message(
                consumer_pid=provider.consumer_pid,
                provider_pid=provider.provider_pid,
                reasons=("changed our mind",),
            ),
        )
        after = _get(fed.city, provider.id)
    finally:
        fed.lab.refuse.discard("FinalizeAgreement")

    # Assert
    assert verified["state"] == "VERIFIED"
    assert finalizing.state == "FINALIZING"
    assert ack["state"] == "TERMINATED"
    assert (after.state, after.reason) == ("TERMINATED", "changed our mind")


def test_provider_operator_terminates_after_agreed(fed: Federation) -> None:
    # Prepare
    provider, _ = _city_agreed_with_lab(fed)

    # Execute
    _terminate(fed.city, provider.id, "the sensor is decommissioned")
    received = fed.lab.wait_for("TerminateNegotiation", provider.consumer_pid)
    after = _wait(fed.city, provider.id, FINAL)

    # Assert
    assert received.sender == CITY
    assert received.message["providerPid"] == provider.id
    assert received.message["reason"] == ["the sensor is decommissioned"]
    assert after.state == "TERMINATED"


def test_consumer_terminates_after_accepted(fed: Federation) -> None:
    # Prepare: lab acknowledged the acceptance and sends no agreement.
    accepted = _researcher_accepted_lab_offer(fed)

    # Execute
    ended = hanse(
        "contract",
        "terminate",
        accepted.id,
        "--reason",
        "found a better dataset",
        "--config",
        str(fed.researcher.config_path),
    )
    received = fed.lab.wait_for("TerminateNegotiation", accepted.consumer_pid)
    after = _wait(fed.researcher, accepted.id, FINAL)

    # Assert
    assert ended.returncode == 0, ended.stderr
    assert received.sender == RESEARCHER
    assert received.message["providerPid"] == accepted.provider_pid
    assert received.message["reason"] == ["found a better dataset"]
    assert (after.state, after.reason) == ("TERMINATED", "found a better dataset")


def test_provider_terminates_after_verified_at_the_consumer(fed: Federation) -> None:
    # Prepare: lab sends a signed agreement; the researcher verifies it; lab acknowledges.
    accepted = _researcher_accepted_lab_offer(fed)
    agreement = _lab_agreement(accepted)
    fed.lab.send(
        fed.researcher,
        "SendAgreement",
        agreement_message(
            provider_pid=accepted.provider_pid,
            consumer_pid=accepted.consumer_pid,
            agreement=agreement,
        ),
        signature=_lab_signature(fed, agreement, "provider"),
    )
    verification = fed.lab.wait_for("VerifyAgreement", accepted.consumer_pid)
    verified = _wait(fed.researcher, accepted.id, {"VERIFIED"})

    # Execute
    ack = fed.lab.send(
        fed.researcher,
        "TerminateNegotiation",
        termination_message(
            consumer_pid=accepted.consumer_pid,
            provider_pid=accepted.provider_pid,
            reasons=("the provider withdraws",),
        ),
    )
    after = _get(fed.researcher, accepted.id)

    # Assert
    assert verification.signature is not None and verification.signature["role"] == "consumer"
    assert json.loads(verified.agreement_json)["agreement"] == agreement
    assert ack["state"] == "TERMINATED"
    assert (after.state, after.reason) == ("TERMINATED", "the provider withdraws")


# --- 4. invalid transitions, foreign callers, duplicates ----------------------------------------


def test_nothing_moves_a_finalized_negotiation(fed: Federation) -> None:
    # Prepare
    started = _start(fed.researcher, AUTO)
    consumer = _wait(fed.researcher, started.id, FINAL)
    provider = _wait(fed.city, _provider_side(fed.city, started.id).id, FINAL)
    message = termination_message(
        consumer_pid=consumer.consumer_pid, provider_pid=consumer.provider_pid, reasons=("late",)
    )

    # Execute
    by_protocol = refusal(
        lambda: send(fed.researcher_tls, fed.city, "TerminateNegotiation", message)
    )
    by_city_operator = refusal(lambda: _terminate(fed.city, provider.id, "late"))
    by_researcher = refusal(lambda: _terminate(fed.researcher, consumer.id, "late"))

    # Assert
    assert (consumer.state, provider.state) == ("FINALIZED", "FINALIZED")
    assert by_protocol.reason == "TRANSITION_INVALID", by_protocol
    assert "FINALIZED is terminal" in by_protocol.message
    assert by_city_operator.reason == by_researcher.reason == "TRANSITION_INVALID"
    assert _get(fed.city, provider.id) == provider
    assert _get(fed.researcher, consumer.id) == consumer


def test_messages_out_of_turn_are_refused_at_the_provider(fed: Federation) -> None:
    # Prepare: the city in AGREED; lab (its consumer) sends what only a provider may, or
    # what DSP does not allow after AGREED.
    provider, agreement = _city_agreed_with_lab(fed)
    pids = {"consumer_pid": provider.consumer_pid, "provider_pid": provider.provider_pid}
    agreed = agreement.message["agreement"]
    offer = {**json.loads(provider.offer_json), "@id": AUTO, "target": QUAY}
    wrong = {
        "SendAgreement": (agreement_message(agreement=agreed, **pids), agreement.signature),
        "FinalizeAgreement": (finalized_event(**pids), None),
        "OfferContract": (offer_message(offer=offer, **pids), None),
        "AcceptOffer": (accepted_event(**pids), None),
        "RequestContract": (request_message(offer=offer, callback_address="", **pids), None),
    }

    # Execute
    refused = {
        rpc: _refused(fed.lab, fed.city, rpc, message, signature)
        for rpc, (message, signature) in wrong.items()
    }
    after = _get(fed.city, provider.id)

    # Assert
    assert {rpc: e.reason for rpc, e in refused.items()} == dict.fromkeys(
        wrong, "TRANSITION_INVALID"
    )
    assert "only the provider sends it" in refused["SendAgreement"].message
    assert "only the provider sends it" in refused["FinalizeAgreement"].message
    assert "not allowed in state AGREED" in refused["AcceptOffer"].message
    assert after == provider


def test_messages_out_of_turn_are_refused_at_the_consumer(fed: Federation) -> None:
    # Prepare: the researcher in ACCEPTED; lab (its provider) sends an offer after the
    # acceptance, a FINALIZED event before any verification, and consumer messages.
    accepted = _researcher_accepted_lab_offer(fed)
    pids = {"consumer_pid": accepted.consumer_pid, "provider_pid": accepted.provider_pid}
    offer = {"@id": LAB_OFFER, "@type": "Offer", "target": LAB_DATASET, **LAB_POLICY}
    wrong = {
        "OfferContract": offer_message(offer=offer, **pids),
        "FinalizeAgreement": finalized_event(**pids),
        "VerifyAgreement": verification_message(**pids),
        "AcceptOffer": accepted_event(**pids),
    }

    # Execute
    refused = {
        rpc: _refused(
            fed.lab, fed.researcher, rpc, message, {} if rpc == "VerifyAgreement" else None
        )
        for rpc, message in wrong.items()
    }
    after = _get(fed.researcher, accepted.id)

    # Assert
    assert {rpc: e.reason for rpc, e in refused.items()} == dict.fromkeys(
        wrong, "TRANSITION_INVALID"
    )
    assert "not allowed in state ACCEPTED" in refused["OfferContract"].message
    assert "not allowed in state ACCEPTED" in refused["FinalizeAgreement"].message
    assert "only the consumer sends it" in refused["VerifyAgreement"].message
    assert after == accepted


def test_a_member_who_is_not_the_counter_party_learns_and_changes_nothing(
    fed: Federation,
) -> None:
    # Prepare
    consumer, provider = _waiting_request(fed)
    message = termination_message(
        consumer_pid=consumer.consumer_pid, provider_pid=consumer.provider_pid, reasons=("mine",)
    )

    # Execute
    at_provider = refusal(lambda: send(fed.intruder, fed.city, "TerminateNegotiation", message))
    at_consumer = refusal(
        lambda: send(fed.intruder, fed.researcher, "TerminateNegotiation", message)
    )
    with grpc.secure_channel(fed.city.protocol, channel_credentials(fed.intruder)) as channel:
        stub = negotiation_protocol_pb2_grpc.NegotiationProtocolServiceStub(channel)
        with pytest.raises(grpc.RpcError) as looked_up:
            stub.GetNegotiation(
                negotiation_protocol_pb2.GetNegotiationRequest(pid=provider.id), timeout=10
            )
    with grpc.secure_channel(fed.city.protocol, channel_credentials(fed.researcher_tls)) as ch:
        own = negotiation_protocol_pb2_grpc.NegotiationProtocolServiceStub(ch).GetNegotiation(
            negotiation_protocol_pb2.GetNegotiationRequest(pid=provider.id), timeout=10
        )

    # Assert
    assert at_provider.reason == at_consumer.reason == "NEGOTIATION_NOT_FOUND"
    assert from_rpc_error(looked_up.value).reason == "NEGOTIATION_NOT_FOUND"
    assert json.loads(own.negotiation_json)["state"] == "REQUESTED"
    assert _get(fed.city, provider.id) == provider
    assert _get(fed.researcher, consumer.id) == consumer


def test_duplicate_deliveries_get_the_first_answer_and_have_one_effect(fed: Federation) -> None:
    # Prepare
    consumer_pid = new_pid()
    request = _lab_request(fed.lab, consumer_pid)
    request_id, termination_id = f"req-{uuid.uuid4()}", f"term-{uuid.uuid4()}"

    # Execute
    first = fed.lab.send(fed.city, "RequestContract", request, message_id=request_id)
    again = fed.lab.send(fed.city, "RequestContract", request, message_id=request_id)
    fresh_id = fed.lab.send(fed.city, "RequestContract", request)
    fed.lab.wait_for("SendAgreement", consumer_pid)
    agreed = _wait(fed.city, first["providerPid"], {"AGREED"})
    ending = termination_message(
        consumer_pid=consumer_pid, provider_pid=first["providerPid"], reasons=("once",)
    )
    ended = fed.lab.send(fed.city, "TerminateNegotiation", ending, message_id=termination_id)
    ended_again = fed.lab.send(fed.city, "TerminateNegotiation", ending, message_id=termination_id)
    someone_elses_id = refusal(
        lambda: send(
            fed.intruder, fed.city, "TerminateNegotiation", ending, message_id=termination_id
        )
    )
    new_message = refusal(lambda: fed.lab.send(fed.city, "TerminateNegotiation", ending))

    # Assert
    assert again == first
    assert first["state"] == "REQUESTED"
    assert fresh_id["providerPid"] == first["providerPid"], "no second negotiation"
    assert agreed.state == "AGREED"
    assert [n.id for n in _provider_records(fed.city, consumer_pid)] == [first["providerPid"]]
    assert ended_again == ended
    assert ended["state"] == "TERMINATED"
    assert someone_elses_id.reason == "NEGOTIATION_NOT_FOUND", "never another sender's answer"
    assert new_message.reason == "TRANSITION_INVALID", "the repeat above was a replay"
    received = [
        e.payload["message"]["@type"]
        for e in _audit(fed.city, subject=agreed.id, kind="negotiation.message.received")
    ]
    assert received == ["ContractRequestMessage", "ContractNegotiationTerminationMessage"]


# --- 6. policy refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer_id", "operand"),
    [(EXPIRED, "dateTime"), (FOREIGN, "assignee")],
    ids=["expired", "foreign-assignee"],
)
def test_request_outside_the_policy_is_refused_and_nothing_is_created(
    fed: Federation, offer_id: str, operand: str
) -> None:
    # Prepare
    refused_before = len(_audit(fed.city, kind="negotiation.refused"))

    # Execute
    started = _start(fed.researcher, offer_id)
    done = _wait(fed.researcher, started.id, FINAL)

    # Assert
    assert done.state == "TERMINATED"
    assert "POLICY_REFUSED" in done.reason
    assert operand in done.reason
    assert _provider_records(fed.city, started.id) == []
    refusals = _audit(fed.city, kind="negotiation.refused")[refused_before:]
    assert [(e.payload["consumerPid"], e.payload["offer"], e.peer) for e in refusals] == [
        (started.id, offer_id, RESEARCHER)
    ]


def test_audit_log_of_both_nodes_still_verifies(fed: Federation) -> None:
    # Execute
    city = hanse("audit", "verify", "--config", str(fed.city.config_path))
    researcher = hanse("audit", "verify", "--config", str(fed.researcher.config_path))

    # Assert
    assert city.returncode == 0, city.stderr
    assert researcher.returncode == 0, researcher.stderr
    assert "chain intact" in city.stdout and "chain intact" in researcher.stdout


# --- regressions for bugs these tests found ---------------------------------------------------


def test_accepting_a_counter_offer_that_excludes_the_stated_use_does_not_finalize(
    fed: Federation,
) -> None:
    # Prepare: the researcher states forecasting; the city offers research only.
    started = _start(fed.researcher, MANUAL, usage={"purpose": "forecasting"})
    _wait(fed.researcher, started.id, {"REQUESTED"})
    provider = _wait(fed.city, _provider_side(fed.city, started.id).id, {"REQUESTED"})
    _counter(fed.city, provider.id, _permission(_purpose_in("research")))
    _wait(fed.researcher, started.id, {"OFFERED"})

    # Execute
    try:
        _accept(fed.researcher, started.id)
        refused_at_accept = False
    except ConnectorError:
        refused_at_accept = True
    end = (
        _get(fed.researcher, started.id)
        if refused_at_accept
        else _wait(fed.researcher, started.id, FINAL)
    )

    # Assert
    assert end.state != "FINALIZED", end.agreement_json


def test_provider_reports_verified_until_its_finalized_event_is_acknowledged(
    fed: Federation,
) -> None:
    # Prepare: lab verifies but does not take the FINALIZED event (provider FINALIZING).
    provider, agreement = _city_agreed_with_lab(fed)
    fed.lab.refuse.add("FinalizeAgreement")
    try:
        fed.lab.send(
            fed.city,
            "VerifyAgreement",
            verification_message(
                consumer_pid=provider.consumer_pid, provider_pid=provider.provider_pid
            ),
            signature=_lab_signature(fed, agreement.message["agreement"], "consumer"),
        )
        fed.lab.wait_for("FinalizeAgreement", provider.consumer_pid)

        # Execute
        with grpc.secure_channel(fed.city.protocol, channel_credentials(fed.lab.tls)) as channel:
            shown = negotiation_protocol_pb2_grpc.NegotiationProtocolServiceStub(
                channel
            ).GetNegotiation(
                negotiation_protocol_pb2.GetNegotiationRequest(pid=provider.id), timeout=10
            )
        held = _get(fed.city, provider.id)
    finally:
        fed.lab.refuse.discard("FinalizeAgreement")

    # Assert
    assert held.state == "FINALIZING"
    assert json.loads(shown.negotiation_json)["state"] == "VERIFIED"


def test_consumer_refuses_an_agreement_with_terms_it_was_never_offered(fed: Federation) -> None:
    # Prepare: lab's agreement adds a prohibition and a round limit to the accepted offer.
    accepted = _researcher_accepted_lab_offer(fed)
    agreement = _lab_agreement(accepted)
    agreement["prohibition"] = [{"action": "distribute"}]
    agreement["permission"][0]["constraint"].append(
        {"leftOperand": "maxRounds", "operator": "lteq", "rightOperand": 1}
    )
    message = agreement_message(
        provider_pid=accepted.provider_pid, consumer_pid=accepted.consumer_pid, agreement=agreement
    )

    # Execute
    refused = refusal(
        lambda: fed.lab.send(
            fed.researcher,
            "SendAgreement",
            message,
            signature=_lab_signature(fed, agreement, "provider"),
        )
    )
    after = _get(fed.researcher, accepted.id)

    # Assert
    assert refused.reason == "AGREEMENT_INVALID"
    assert after == accepted


def test_counter_request_to_a_manual_offer_waits_for_the_operator(fed: Federation) -> None:
    # Prepare
    consumer, provider = _offered(fed, _permission(_purpose_in("research")))

    # Execute
    _counter(fed.researcher, consumer.id, _permission(_purpose_in("research")))
    waiting = _wait(fed.city, provider.id, {"REQUESTED"})

    # Assert
    assert waiting.reason == "waiting for the operator to approve"
