"""``hanse contract``: negotiate usage contracts with peers, and check agreements."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import typer
from google.protobuf import json_format

from connector.negotiation.messages import agreement_message
from connector.negotiation.states import TERMINAL_STATES, NegotiationState
from connector.signing import SignedAgreement, SigningError, verify_signed_agreement
from connector.v1 import negotiation_management_pb2 as pb
from connector.v1 import negotiation_pb2
from node.cli.output import (
    ConfigOption,
    console,
    errors,
    fail,
    load,
    print_json,
    readable_errors,
    table,
)
from node.client import NodeClient

app = typer.Typer(
    help="Usage contracts: negotiate, approve, export and verify.", no_args_is_help=True
)

ROLE = {
    negotiation_pb2.NEGOTIATION_ROLE_CONSUMER: "consumer",
    negotiation_pb2.NEGOTIATION_ROLE_PROVIDER: "provider",
}
FINAL = {s.value for s in TERMINAL_STATES}


def _show(negotiation: negotiation_pb2.Negotiation, as_json: bool) -> None:
    if as_json:
        print_json(json_format.MessageToDict(negotiation, preserving_proto_field_name=True))
        return
    table(
        f"negotiation {negotiation.id}",
        ["field", "value"],
        [
            ["role", ROLE.get(negotiation.role, "?")],
            ["state", negotiation.state],
            [
                "counter-party",
                f"{negotiation.counterparty_id} ({negotiation.counterparty_address})",
            ],
            ["dataset / offer", f"{negotiation.dataset_id} / {negotiation.offer_id}"],
            ["usage", negotiation.usage_json],
            ["reason", negotiation.reason or "-"],
            ["agreement", "signed by both" if negotiation.agreement_json else "-"],
        ],
    )


def _fetch(client: NodeClient, negotiation_id: str) -> negotiation_pb2.Negotiation:
    return client.call(
        client.negotiations.GetManagedNegotiation,
        pb.GetManagedNegotiationRequest(id=negotiation_id),
    ).negotiation


def _wait(client: NodeClient, negotiation_id: str, timeout: float) -> negotiation_pb2.Negotiation:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        current = _fetch(client, negotiation_id)
        if current.state != last:
            # Progress goes to stderr, so --json output stays one document.
            errors.print(f"  {time.strftime('%H:%M:%S')} {current.state}", highlight=False)
            last = current.state
        # Terminal, or an offer from the provider that waits for this operator's answer.
        if current.state in FINAL or current.state == NegotiationState.OFFERED.value:
            return current
        if time.monotonic() > deadline:
            hint = f"hanse contract show {negotiation_id}"
            raise fail(f"still {current.state} after {timeout:.0f}s; see: {hint}")
        time.sleep(0.2)


@app.command("request")
def contract_request(
    peer: str = typer.Argument(..., help="Peer name or participant id."),
    dataset: str = typer.Argument(..., help="Dataset id at the peer."),
    offer: str = typer.Option("", help="Offer id (needed when the dataset has several)."),
    purpose: str = typer.Option(..., help="What the data is used for, e.g. forecasting."),
    task_id: str = typer.Option("", help="Task (training plugin) id."),
    task_hash: str = typer.Option("", help="Task content hash, sha256:<hex>."),
    aggregator: str = typer.Option("", help="Aggregator participant id."),
    rounds: int = typer.Option(0, help="Training rounds asked for."),
    epsilon: float = typer.Option(0.0, help="Privacy budget epsilon asked for."),
    delta: float = typer.Option(0.0, help="Privacy delta asked for."),
    min_participants: int = typer.Option(0, help="Fewest participants per round."),
    jurisdiction: str = typer.Option("", help="Where the data is processed."),
    wait: bool = typer.Option(False, "--wait", help="Show progress until FINALIZED or TERMINATED."),
    timeout: float = typer.Option(60.0, help="Seconds --wait waits."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: Path = ConfigOption,
) -> None:
    """Ask a peer for a usage contract on one of its offers."""
    usage: dict[str, Any] = {"purpose": purpose}
    if task_id:
        usage["task"] = {"id": task_id, **({"hash": task_hash} if task_hash else {})}
    for key, value in (
        ("aggregator", aggregator),
        ("max_rounds", rounds),
        ("epsilon", epsilon),
        ("delta", delta),
        ("min_participants", min_participants),
        ("jurisdiction", jurisdiction),
    ):
        if value:
            usage[key] = value
    with readable_errors(), NodeClient(load(config)) as client:
        started = client.call(
            client.negotiations.StartNegotiation,
            pb.StartNegotiationRequest(
                peer=peer,
                dataset_id=dataset,
                offer_id=offer,
                usage_json=json.dumps(usage),
                request_id=str(uuid.uuid4()),
            ),
        ).negotiation
        if not as_json:
            console.print(f"negotiation {started.id} started with {started.counterparty_id}")
        result = _wait(client, started.id, timeout) if wait else started
    _show(result, as_json)
    if wait and result.state == NegotiationState.TERMINATED.value:
        raise typer.Exit(1)


@app.command("list")
def contract_list(
    state: str = typer.Option("", help="Only this state."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: Path = ConfigOption,
) -> None:
    """List negotiations, newest first."""
    with readable_errors(), NodeClient(load(config)) as client:
        found = client.call(
            client.negotiations.ListNegotiations,
            pb.ListNegotiationsRequest(page_size=500, state=state),
        ).negotiations
    if as_json:
        print_json([json_format.MessageToDict(n, preserving_proto_field_name=True) for n in found])
        return
    table(
        "negotiations",
        ["id", "role", "state", "counter-party", "dataset", "reason"],
        [
            [n.id, ROLE.get(n.role, "?"), n.state, n.counterparty_id, n.dataset_id, n.reason]
            for n in found
        ],
    )


@app.command("show")
def contract_show(
    negotiation_id: str = typer.Argument(..., help="Negotiation id."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: Path = ConfigOption,
) -> None:
    """Show one negotiation."""
    with readable_errors(), NodeClient(load(config)) as client:
        found = _fetch(client, negotiation_id)
    _show(found, as_json)


@app.command("approve")
def contract_approve(
    negotiation_id: str = typer.Argument(..., help="Negotiation id."),
    config: Path = ConfigOption,
) -> None:
    """Agree to a waiting request (provider), or accept an offer (consumer)."""
    with readable_errors(), NodeClient(load(config)) as client:
        found = _fetch(client, negotiation_id)
        if found.role == negotiation_pb2.NEGOTIATION_ROLE_PROVIDER:
            result = client.call(
                client.negotiations.ApproveNegotiation,
                pb.ApproveNegotiationRequest(id=negotiation_id, request_id=str(uuid.uuid4())),
            ).negotiation
        else:
            result = client.call(
                client.negotiations.AcceptNegotiation,
                pb.AcceptNegotiationRequest(id=negotiation_id, request_id=str(uuid.uuid4())),
            ).negotiation
    console.print(f"negotiation {result.id}: {result.state}")


@app.command("counter")
def contract_counter(
    negotiation_id: str = typer.Argument(..., help="Negotiation id."),
    policy: Path = typer.Option(..., "--policy", help="ODRL Offer policy (JSON or YAML)."),
    config: Path = ConfigOption,
) -> None:
    """Answer with another policy (provider: an offer; consumer: a new request)."""
    import yaml

    try:
        document = yaml.safe_load(policy.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"cannot read {policy}: {exc}", 2) from exc
    with readable_errors(), NodeClient(load(config)) as client:
        result = client.call(
            client.negotiations.CounterNegotiation,
            pb.CounterNegotiationRequest(
                id=negotiation_id, policy_json=json.dumps(document), request_id=str(uuid.uuid4())
            ),
        ).negotiation
    console.print(f"negotiation {result.id}: {result.state}")


@app.command("terminate")
def contract_terminate(
    negotiation_id: str = typer.Argument(..., help="Negotiation id."),
    reason: str = typer.Option("", help="Told to the counter-party."),
    config: Path = ConfigOption,
) -> None:
    """End a negotiation (any non-terminal state, either side)."""
    with readable_errors(), NodeClient(load(config)) as client:
        result = client.call(
            client.negotiations.TerminateManagedNegotiation,
            pb.TerminateManagedNegotiationRequest(
                id=negotiation_id, reason=reason, request_id=str(uuid.uuid4())
            ),
        ).negotiation
    console.print(f"negotiation {result.id}: {result.state}")


@app.command("export")
def contract_export(
    negotiation_id: str = typer.Argument(..., help="Negotiation id."),
    out: Path = typer.Option(None, "--out", help="File to write (default: stdout)."),
    dsp: bool = typer.Option(
        False, "--dsp", help="The DSP 2025-1 ContractAgreementMessage JSON-LD instead."
    ),
    config: Path = ConfigOption,
) -> None:
    """Export the signed agreement (the DSP Agreement and both signatures, verifiable offline)."""
    with readable_errors(), NodeClient(load(config)) as client:
        found = _fetch(client, negotiation_id)
    if not found.agreement_json:
        raise fail(f"negotiation {negotiation_id} has no agreement yet (state {found.state})")
    document = json.loads(found.agreement_json)
    if dsp:
        document = agreement_message(
            provider_pid=found.provider_pid,
            consumer_pid=found.consumer_pid,
            agreement=document["agreement"],
        ).to_json()
    if out is None:
        print_json(document)
    else:
        out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        console.print(f"agreement written to {out}")


@app.command("verify")
def contract_verify(
    file: Path = typer.Argument(..., help="A signed agreement from 'hanse contract export'."),
    trust_bundle: Path = typer.Option(
        None, "--trust-bundle", help="CA certificates (PEM); default: the node config's bundle."
    ),
    config: Path = ConfigOption,
) -> None:
    """Check both signatures of an agreement offline, against the trust bundle."""
    if trust_bundle is None:
        with readable_errors():
            loaded = load(config)
            trust_bundle = loaded.resolve(loaded.model.tls.trust_bundle)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
        trust = trust_bundle.read_bytes()
        signed = SignedAgreement.from_json(document)
        report = verify_signed_agreement(signed, trust)
    except (OSError, ValueError, SigningError) as exc:
        raise fail(f"{file}: {exc}", 2) from exc
    for check in report.checks:
        mark = "ok " if check.ok else "BAD"
        console.print(f"  {mark} {check.name}: {check.detail}", highlight=False)
    if not report.ok:
        raise fail(f"{file}: {report.problem}")
    console.print(f"{file}: both signatures verify", highlight=False)
