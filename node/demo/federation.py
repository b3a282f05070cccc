"""Start the demo's nodes: a researcher (the aggregator) and the cities, as real processes.

Every node gets a folder under the output folder (config, certificates, token,
data), written by :class:`~node.setup.NodeInit` and then adjusted: the cities know
the researcher (with its Flower fleet address) and offer their data for training
under a policy; the researcher runs the aggregator. Ports are chosen free on
loopback. Each started node is appended to ``running`` at once, so the caller can
stop it whatever happens next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from federation.flower.process import free_port
from node.demo.options import MAX_EPSILON, MAX_ROUNDS
from node.demo.scenario import RESEARCHER, CityPlan, Negotiation
from node.setup import DEFAULT_PURPOSES, NodeInit, PeerSpec
from node.supervisor import RunningNode, start_node

MAX_TRAIN_EXAMPLES = 1500
"""Each city's ``training.max_train_examples``: keeps a round to seconds on two cores."""
ROUND_TIMEOUT_SECONDS = 240
"""The aggregator's ``round_timeout_seconds``."""


@dataclass(frozen=True)
class CityNode:
    """A started city and its plan."""

    plan: CityPlan
    """What it holds and how its contract goes."""
    node: RunningNode
    """Its process."""


@dataclass(frozen=True)
class Federation:
    """The started nodes."""

    researcher: RunningNode
    """The researcher's node (aggregator)."""
    cities: list[CityNode]
    """The city nodes, in plan order."""


def standing_policy() -> dict[str, Any]:
    """The ODRL policy each city offers its datasets under (before any counter-offer)."""
    return {
        "permission": [
            {
                "action": "use",
                "constraint": [
                    {
                        "leftOperand": "purpose",
                        "operator": "isAnyOf",
                        "rightOperand": list(DEFAULT_PURPOSES),
                    },
                    {"leftOperand": "maxRounds", "operator": "lteq", "rightOperand": MAX_ROUNDS},
                    {"leftOperand": "epsilon", "operator": "lteq", "rightOperand": MAX_EPSILON},
                ],
            }
        ]
    }


def start_federation(
    out: Path,
    plans: list[CityPlan],
    running: list[RunningNode],
    say: Callable[[str], None],
) -> Federation:
    """Write every node folder under ``out`` and start the nodes (cities first).

    Raises:
        NodeStartError: a node exited or did not serve in time.
    """
    protocol_port, fleet_port = free_port(), free_port()
    researcher_peer = {
        "name": RESEARCHER,
        "participant_id": f"urn:hanse:{RESEARCHER}",
        "address": f"127.0.0.1:{protocol_port}",
        "fleet_address": f"127.0.0.1:{fleet_port}",
    }
    cities: list[CityNode] = []
    for plan in plans:
        loaded = NodeInit(
            name=plan.name,
            pki_dir=out / "pki",
            out_dir=out / plan.name,
            protocol_listen="127.0.0.1:0",
            management_listen="127.0.0.1:0",
            sensors=list(plan.sensors),
        ).write()
        document = _read(loaded.path)
        document["peers"] = [researcher_peer]
        document["training"] = {
            "max_train_examples": MAX_TRAIN_EXAMPLES,
            "reconcile_seconds": 1,
        }
        for dataset in document["datasets"]:
            for offer in dataset["offers"]:
                offer["auto_agree"] = plan.negotiation is Negotiation.AGREE
                offer["policy"] = standing_policy()
        _write(loaded.path, document)
        node = start_node(loaded.path, out / "logs" / f"{plan.name}.log")
        running.append(node)
        cities.append(CityNode(plan, node))
        how = (
            "agrees automatically" if plan.negotiation is Negotiation.AGREE else "asks its operator"
        )
        say(
            f"{plan.name} serving at {node.protocol} (mutual TLS), holding "
            f"{', '.join(plan.sensors)}; its offer {how}"
        )
    loaded = NodeInit(
        name=RESEARCHER,
        pki_dir=out / "pki",
        out_dir=out / RESEARCHER,
        protocol_listen=f"127.0.0.1:{protocol_port}",
        management_listen="127.0.0.1:0",
        peers=[PeerSpec(c.plan.name, c.plan.participant_id, c.node.protocol) for c in cities],
    ).write()
    document = _read(loaded.path)
    document["aggregator"] = {
        "enabled": True,
        "listen": f"127.0.0.1:{fleet_port}",
        "round_timeout_seconds": ROUND_TIMEOUT_SECONDS,
    }
    _write(loaded.path, document)
    researcher = start_node(loaded.path, out / "logs" / f"{RESEARCHER}.log")
    running.append(researcher)
    say(
        f"{RESEARCHER} serving at {researcher.protocol}, aggregator (Flower SuperLink) at "
        f"127.0.0.1:{fleet_port}; it knows {len(cities)} cities"
    )
    return Federation(researcher, cities)


def _read(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):  # pragma: no cover - NodeInit wrote it
        raise ValueError(f"{path} does not hold a mapping")
    return document


def _write(path: Path, document: Mapping[str, Any]) -> None:
    header = "# Written by 'hanse demo' (NodeInit, then adjusted for the demo).\n"
    path.write_text(header + yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
