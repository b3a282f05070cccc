"""``hanse catalog`` and ``hanse peers``: what peers offer, asked through your node."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from connector.dsp import catalog_to_dsp
from connector.v1 import peer_management_pb2
from node.cli.output import ConfigOption, console, load, print_json, readable_errors, table
from node.client import NodeClient


def catalog(
    peer: str = typer.Argument(..., help="Peer name or participant id from your node config."),
    config: Path = ConfigOption,
    keyword: str = typer.Option("", help="Only datasets with this keyword."),
    as_json: bool = typer.Option(False, "--json", help="The DSP 2025-1 Catalog JSON-LD."),
) -> None:
    """Show a peer's catalog: its datasets and the offers you may negotiate."""
    with readable_errors(), NodeClient(load(config)) as client:
        response = client.call(
            client.peers.GetPeerCatalog,
            peer_management_pb2.GetPeerCatalogRequest(peer=peer, keyword=keyword),
        )
    if as_json:
        print_json(catalog_to_dsp(response.catalog))
        return
    found = response.catalog
    console.print(
        f"[bold]{response.peer.name}[/] {found.participant_id} at {found.endpoint_url}: "
        f"{len(found.datasets)} datasets",
        highlight=False,
    )
    rows = []
    for dataset in found.datasets:
        for offer in dataset.offers:
            rows.append(
                [
                    dataset.id,
                    dataset.title,
                    ", ".join(dataset.keywords),
                    offer.id,
                    _summary(offer.policy_json),
                ]
            )
    table("", ["dataset", "title", "keywords", "offer", "policy"], rows)


def peers(
    config: Path = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the peers your node knows."""
    with readable_errors(), NodeClient(load(config)) as client:
        response = client.call(client.peers.ListPeers, peer_management_pb2.ListPeersRequest())
    if as_json:
        print_json(
            [
                {"name": p.name, "participant_id": p.participant_id, "address": p.address}
                for p in response.peers
            ]
        )
        return
    table(
        "peers",
        ["name", "participant id", "address"],
        [[p.name, p.participant_id, p.address] for p in response.peers],
    )


def _summary(policy_json: str) -> str:
    """A one-line reading of an ODRL offer: actions and constraints."""
    policy = json.loads(policy_json)
    parts: list[str] = []
    for kind in ("permission", "prohibition", "obligation"):
        for rule in policy.get(kind, []):
            constraints = [_constraint(c) for c in rule.get("constraint", [])]
            text = f"{'' if kind == 'permission' else kind + ' '}{rule.get('action')}"
            if constraints:
                text += " if " + " and ".join(constraints)
            parts.append(text)
    return "; ".join(parts)


def _constraint(constraint: dict[str, object]) -> str:
    for logical in ("and", "or", "xone", "andSequence"):
        members = constraint.get(logical)
        if isinstance(members, list):
            return "(" + f" {logical} ".join(_constraint(m) for m in members) + ")"
    right = constraint.get("rightOperand")
    shown = ",".join(map(str, right)) if isinstance(right, list) else str(right)
    return f"{constraint.get('leftOperand')} {constraint.get('operator')} {shown}"
