"""``hanse privacy``: read the privacy ledger: what each dataset has spent, round by round.

A client of the node's privacy management API. A dataset's epsilon is composed over
every round of DP training on it, under every agreement: the figure the training
guard compares with each agreement's budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from google.protobuf import json_format
from google.protobuf.message import Message

from connector.v1 import privacy_management_pb2 as pb
from node.cli.output import ConfigOption, console, load, print_json, readable_errors, table
from node.client import NodeClient

app = typer.Typer(
    help="The privacy ledger: the epsilon each dataset has spent, and on what.",
    no_args_is_help=True,
)


def as_dict(message: Message) -> dict[str, Any]:
    """``message`` as JSON-ready data, zero values included (0 spent is an answer)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _time(message: Any, field: str) -> str:
    if not message.HasField(field):
        return "-"
    return str(getattr(message, field).ToJsonString())


def _agreed(spend: pb.PrivacyAgreementSpend) -> str:
    epsilon = f"{spend.agreed_epsilon:g}" if spend.agreed_epsilon else "?"
    rounds = str(spend.agreed_max_rounds) if spend.agreed_max_rounds else "?"
    return f"ε {epsilon}, {rounds} rounds in all"


@app.command("list")
def privacy_list(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: Path = ConfigOption,
) -> None:
    """List every dataset of this node with the epsilon it has spent so far."""
    with readable_errors(), NodeClient(load(config)) as client:
        budgets = client.call(
            client.privacy.ListPrivacyBudgets, pb.ListPrivacyBudgetsRequest()
        ).budgets
    if as_json:
        print_json([as_dict(b) for b in budgets])
        return
    table(
        "privacy budgets",
        ["dataset", "epsilon spent", "delta", "rounds", "agreements", "last spend"],
        [
            [
                b.dataset_id,
                f"{b.epsilon_spent:.4f}",
                f"{b.delta:g}" if b.rounds else "-",
                str(b.rounds),
                ", ".join(
                    f"{a.agreement_id} ({a.rounds_used} rounds; {_agreed(a)})" for a in b.agreements
                )
                or "-",
                _time(b, "last_spend_time"),
            ]
            for b in budgets
        ],
    )


@app.command("show")
def privacy_show(
    dataset_id: str = typer.Argument(..., help="Dataset id (hanse privacy list shows them)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: Path = ConfigOption,
) -> None:
    """Show one dataset's spent epsilon, the agreements that spent it, and every round."""
    with readable_errors(), NodeClient(load(config)) as client:
        response = client.call(
            client.privacy.GetPrivacyBudget, pb.GetPrivacyBudgetRequest(dataset_id=dataset_id)
        )
    if as_json:
        print_json(as_dict(response))
        return
    budget = response.budget
    console.print(f"dataset:        {budget.dataset_id}", highlight=False)
    console.print(
        f"epsilon spent:  {budget.epsilon_spent:.4f}"
        + (f" (delta {budget.delta:g})" if budget.rounds else " (never trained on)"),
        highlight=False,
    )
    console.print(f"rounds:         {budget.rounds}", highlight=False)
    console.print(f"last spend:     {_time(budget, 'last_spend_time')}", highlight=False)
    if budget.agreements:
        table(
            "agreements",
            [
                "agreement",
                "agreed",
                "epsilon left",
                "rounds used",
                "runs",
                "epsilon after",
                "last spend",
            ],
            [
                [
                    a.agreement_id,
                    _agreed(a),
                    f"{max(a.agreed_epsilon - budget.epsilon_spent, 0.0):.4f}"
                    if a.agreed_epsilon
                    else "?",
                    str(a.rounds_used),
                    str(a.runs),
                    f"{a.epsilon_after:.4f}",
                    _time(a, "last_spend_time"),
                ]
                for a in budget.agreements
            ],
        )
    if response.rounds:
        table(
            "rounds",
            [
                "seq",
                "agreement",
                "run",
                "round",
                "noise",
                "sample rate",
                "steps",
                "epsilon after",
                "time",
            ],
            [
                [
                    str(r.seq),
                    r.agreement_id,
                    r.run_id,
                    str(r.round),
                    f"{r.noise_multiplier:g}",
                    f"{r.sample_rate:.4g}",
                    str(r.steps),
                    f"{r.epsilon_after:.4f}",
                    _time(r, "time"),
                ]
                for r in response.rounds
            ],
        )
