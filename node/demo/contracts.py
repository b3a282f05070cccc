"""The demo's usage contracts: agreed, countered then accepted, and refused.

The researcher asks every city for a contract to train the task on its first
dataset, stating the task (id and content hash), the aggregator, the rounds and
the privacy budget (epsilon, delta): the terms each city's runner checks before
any data is read. Most cities agree automatically; the second city's offer waits
for its operator, who (played by the demo) answers with a tighter counter-offer
that the researcher accepts. A request for a purpose no city allows is refused.
Each finalized agreement is written twice: as the signed agreement (verifiable
offline with ``hanse contract verify``) and as the DSP 2025-1 ContractAgreementMessage.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connector.negotiation.messages import agreement_message
from connector.v1 import negotiation_management_pb2 as pb
from connector.v1.negotiation_pb2 import Negotiation as NegotiationMessage
from federation.tasks.base import Task
from node.client import NodeClient
from node.demo.federation import CityNode, Federation
from node.demo.scenario import REFUSED_PURPOSE, Negotiation

DELTA = 1e-5
"""The privacy delta every request states."""
PURPOSE = "forecasting"
"""The purpose of the training requests."""
COUNTER_DAYS = 7
"""How long the counter-offer's agreement is valid."""
NEGOTIATION_TIMEOUT = 60.0
"""Seconds one negotiation step may take."""


class ContractError(RuntimeError):
    """A negotiation did not end as the demo's scenario expects."""


@dataclass(frozen=True)
class ContractOutcome:
    """How one negotiation ended."""

    city: str
    """The provider's node name."""
    dataset: str
    """The dataset asked for."""
    asked: str
    """What the researcher asked for, in words."""
    outcome: str
    """``agreed``, ``countered, accepted`` or ``refused``."""
    state: str
    """The negotiation's final state (FINALIZED or TERMINATED)."""
    reason: str
    """Why it ended so, in words."""
    negotiation_id: str = ""
    """The researcher's negotiation id."""
    agreement_id: str = ""
    """The agreement's ``@id`` ("" unless finalized)."""
    files: tuple[str, ...] = ()
    """The agreement files, relative to the output folder."""

    @property
    def agreed(self) -> bool:
        """Whether it ended with an agreement."""
        return self.state == "FINALIZED"


def training_usage(task: Task, aggregator: str, rounds: int, epsilon: float) -> dict[str, Any]:
    """The usage the researcher states for training ``task`` (what the runner checks)."""
    return {
        "purpose": PURPOSE,
        "task": {"id": task.id, "hash": task.content_hash()},
        "aggregator": aggregator,
        "max_rounds": rounds,
        "epsilon": epsilon,
        "delta": DELTA,
    }


def counter_policy(usage: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The counter-offer: forecasting only, at most the rounds and budget asked, for a week.

    Tighter than the standing offer (three purposes, up to 20 rounds and epsilon 100,
    no end date), yet it permits the use the researcher stated, so it can accept.
    """
    until = (now + timedelta(days=COUNTER_DAYS)).replace(microsecond=0)
    return {
        "permission": [
            {
                "action": "use",
                "constraint": [
                    {"leftOperand": "purpose", "operator": "eq", "rightOperand": PURPOSE},
                    {
                        "leftOperand": "maxRounds",
                        "operator": "lteq",
                        "rightOperand": usage["max_rounds"],
                    },
                    {
                        "leftOperand": "epsilon",
                        "operator": "lteq",
                        "rightOperand": usage["epsilon"],
                    },
                    {"leftOperand": "delta", "operator": "lteq", "rightOperand": usage["delta"]},
                    {
                        "leftOperand": "dateTime",
                        "operator": "lteq",
                        "rightOperand": until.isoformat().replace("+00:00", "Z"),
                    },
                ],
            }
        ]
    }


def counter_terms(policy: Mapping[str, Any]) -> str:
    """The counter-offer's constraints in words, e.g. ``purpose = forecasting, epsilon <= 8``."""
    signs = {"eq": "=", "lteq": "<=", "gteq": ">=", "lt": "<", "gt": ">", "isAnyOf": "in"}
    words = {"dateTime": "valid until", "maxRounds": "rounds", "purpose": "purpose"}
    parts = []
    for constraint in policy["permission"][0]["constraint"]:
        left = str(constraint["leftOperand"])
        right = constraint["rightOperand"]
        if left == "dateTime":
            parts.append(f"valid until {right}")
        else:
            sign = signs.get(str(constraint["operator"]), str(constraint["operator"]))
            parts.append(
                f"{words.get(left, left)} {sign} {right:g}"
                if isinstance(right, float)
                else f"{words.get(left, left)} {sign} {right}"
            )
    return ", ".join(parts)


def negotiate(
    out: Path,
    federation: Federation,
    task: Task,
    rounds: int,
    epsilon: float,
    say: Callable[[str], None],
) -> list[ContractOutcome]:
    """Every city's training contract, then the refused request; write the agreements.

    Raises:
        ContractError: a negotiation did not end as planned (the message says how it ended).
        ConnectorError: a node refused a call or could not be reached.
    """
    agreements_dir = out / "agreements"
    agreements_dir.mkdir(exist_ok=True)
    researcher = federation.researcher
    usage = training_usage(task, researcher.participant_id, rounds, epsilon)
    asked = f"{PURPOSE}, task {task.id}, {rounds} rounds, epsilon {epsilon:g}, delta {DELTA:g}"
    outcomes: list[ContractOutcome] = []
    with researcher.client() as client:
        started = [(city, _start(client, city, usage)) for city in federation.cities]
        refused_city = federation.cities[0]
        refused = _start(client, refused_city, {**usage, "purpose": REFUSED_PURPOSE})
        for city, negotiation in started:
            if city.plan.negotiation is Negotiation.COUNTER:
                final, reason = _counter(client, city, negotiation, usage, say)
                outcome = "countered, accepted"
            else:
                final = _until(client, negotiation.id, ("FINALIZED", "TERMINATED"))
                reason = "its standing offer allows the stated use; agreed automatically"
                outcome = "agreed"
            if final.state != "FINALIZED":
                raise ContractError(
                    f"the contract with {city.plan.name} ended {final.state}: {final.reason}"
                )
            files = _write_agreement(agreements_dir, city.plan.name, final)
            agreement = json.loads(final.agreement_json)["agreement"]
            outcomes.append(
                ContractOutcome(
                    city=city.plan.name,
                    dataset=final.dataset_id,
                    asked=asked,
                    outcome=outcome,
                    state=final.state,
                    reason=reason,
                    negotiation_id=final.id,
                    agreement_id=str(agreement.get("@id", "")),
                    files=files,
                )
            )
            say(f"{city.plan.name}: {outcome} ({final.dataset_id}); signed by both: {files[0]}")
        final = _until(client, refused.id, ("FINALIZED", "TERMINATED"))
        if final.state != "TERMINATED":
            raise ContractError(
                f"{refused_city.plan.name} agreed to a request for {REFUSED_PURPOSE}; "
                "its policy should refuse it"
            )
        outcomes.append(
            ContractOutcome(
                city=refused_city.plan.name,
                dataset=final.dataset_id,
                asked=asked.replace(PURPOSE, REFUSED_PURPOSE, 1),
                outcome="refused",
                state=final.state,
                reason=final.reason,
                negotiation_id=final.id,
            )
        )
        say(f"{refused_city.plan.name}: refused a request for {REFUSED_PURPOSE}: {final.reason}")
    return outcomes


def _start(client: NodeClient, city: CityNode, usage: Mapping[str, Any]) -> NegotiationMessage:
    return client.call(
        client.negotiations.StartNegotiation,
        pb.StartNegotiationRequest(
            peer=city.plan.name,
            dataset_id=city.plan.training_dataset,
            usage_json=json.dumps(dict(usage)),
            request_id=str(uuid.uuid4()),
        ),
    ).negotiation


def _counter(
    researcher: NodeClient,
    city: CityNode,
    negotiation: NegotiationMessage,
    usage: Mapping[str, Any],
    say: Callable[[str], None],
) -> tuple[NegotiationMessage, str]:
    """City's operator counters; the researcher accepts; return the final negotiation."""
    requested = _until(researcher, negotiation.id, ("REQUESTED", "TERMINATED", "FINALIZED"))
    if requested.state != "REQUESTED":
        raise ContractError(
            f"{city.plan.name} should wait for its operator, but the negotiation is "
            f"{requested.state}: {requested.reason}"
        )
    policy = counter_policy(usage, datetime.now(UTC))
    with city.node.client() as operator:
        waiting = _provider_side(operator, requested.provider_pid)
        say(f"{city.plan.name}: the request waits for its operator ({waiting.reason})")
        operator.call(
            operator.negotiations.CounterNegotiation,
            pb.CounterNegotiationRequest(
                id=waiting.id, policy_json=json.dumps(policy), request_id=str(uuid.uuid4())
            ),
        )
    terms = counter_terms(policy)
    say(f"{city.plan.name}: its operator counters with a tighter offer: {terms}")
    offered = _until(researcher, negotiation.id, ("OFFERED", "TERMINATED", "FINALIZED"))
    if offered.state != "OFFERED":
        raise ContractError(
            f"the counter-offer of {city.plan.name} did not arrive: {offered.state} "
            f"{offered.reason}"
        )
    researcher.call(
        researcher.negotiations.AcceptNegotiation,
        pb.AcceptNegotiationRequest(id=negotiation.id, request_id=str(uuid.uuid4())),
    )
    say("researcher: the counter-offer permits the stated use; accepted")
    final = _until(researcher, negotiation.id, ("FINALIZED", "TERMINATED"))
    return final, f"its operator countered: {terms}; the researcher accepted"


def _provider_side(operator: NodeClient, provider_pid: str) -> NegotiationMessage:
    deadline = time.monotonic() + NEGOTIATION_TIMEOUT
    while True:
        listed = operator.call(
            operator.negotiations.ListNegotiations, pb.ListNegotiationsRequest(page_size=500)
        ).negotiations
        for found in listed:
            if found.provider_pid == provider_pid:
                return found
        if time.monotonic() > deadline:
            raise ContractError(f"the city's node has no negotiation {provider_pid}")
        time.sleep(0.1)


def _until(client: NodeClient, negotiation_id: str, states: tuple[str, ...]) -> NegotiationMessage:
    deadline = time.monotonic() + NEGOTIATION_TIMEOUT
    while True:
        found = client.call(
            client.negotiations.GetManagedNegotiation,
            pb.GetManagedNegotiationRequest(id=negotiation_id),
        ).negotiation
        if found.state in states:
            return found
        if time.monotonic() > deadline:
            raise ContractError(
                f"negotiation {negotiation_id} is still {found.state} after "
                f"{NEGOTIATION_TIMEOUT:.0f}s (waiting for {' or '.join(states)})"
            )
        time.sleep(0.1)


def _write_agreement(folder: Path, city: str, final: NegotiationMessage) -> tuple[str, ...]:
    signed = json.loads(final.agreement_json)
    message = agreement_message(
        provider_pid=final.provider_pid,
        consumer_pid=final.consumer_pid,
        agreement=signed["agreement"],
    ).to_json()
    (folder / f"{city}.json").write_text(json.dumps(signed, indent=2) + "\n", encoding="utf-8")
    (folder / f"{city}.dsp.json").write_text(json.dumps(message, indent=2) + "\n", encoding="utf-8")
    return (f"agreements/{city}.json", f"agreements/{city}.dsp.json")
