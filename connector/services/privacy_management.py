"""Management API: the privacy ledger, read per dataset (what each has spent, and how).

Every dataset this node holds gets a budget, those never trained on included (nothing
spent). A dataset's epsilon is the one its newest ledger round recorded: composed over
every round trained on it, under every agreement, as the training guard counts it.
The agreements that spent from a dataset are listed with the epsilon and rounds they
allow, read from this node's provider-side negotiations.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from connector.agreement_terms import agreement_id_of
from connector.datasets import is_valid_id
from connector.errors import ConnectorError, invalid_argument, not_found
from connector.negotiation.model import NegotiationRecord, NegotiationStore
from connector.negotiation.states import Role
from connector.store.datasets import SqlDatasetStore
from connector.store.ledger import LedgerRound, SqlPrivacyLedger
from connector.v1 import privacy_management_pb2 as pb
from connector.v1 import privacy_management_pb2_grpc
from connector.wire import timestamp

_PAGE = 200


@dataclass(frozen=True)
class AgreedBudget:
    """What an agreement allows, as its usage states it (None: not stated)."""

    epsilon: float | None
    """The epsilon the agreement allows."""
    max_rounds: int | None
    """The training rounds the agreement allows over all its runs (``maxRounds``)."""


class PrivacyManagementServicer(privacy_management_pb2_grpc.PrivacyManagementServiceServicer):
    """Reads the privacy ledger for the node's operator; never writes."""

    def __init__(
        self,
        datasets: SqlDatasetStore,
        ledger: SqlPrivacyLedger,
        negotiations: NegotiationStore,
    ) -> None:
        """Read from these stores of one node.

        Args:
            datasets: The datasets the node holds (those of its config among them).
            ledger: The node's privacy ledger.
            negotiations: The node's negotiations, for the terms of each agreement.
        """
        self._datasets = datasets
        self._ledger = ledger
        self._negotiations = negotiations

    def ListPrivacyBudgets(
        self, request: pb.ListPrivacyBudgetsRequest, context: grpc.ServicerContext
    ) -> pb.ListPrivacyBudgetsResponse:
        """Every dataset's budget, by dataset id."""
        agreed = agreed_budgets(self._negotiations)
        return pb.ListPrivacyBudgetsResponse(
            budgets=[
                budget_pb(dataset_id, self._ledger.history(dataset_id), agreed)
                for dataset_id in self._dataset_ids()
            ]
        )

    def GetPrivacyBudget(
        self, request: pb.GetPrivacyBudgetRequest, context: grpc.ServicerContext
    ) -> pb.GetPrivacyBudgetResponse:
        """One dataset's budget and every round on its ledger, oldest first."""
        dataset_id = request.dataset_id
        if not is_valid_id(dataset_id):
            raise invalid_argument(
                f"dataset_id {dataset_id!r} is missing or malformed; name a dataset of this "
                "node (hanse privacy list shows them)",
                "dataset_id",
            )
        history = self._ledger.history(dataset_id)
        if not history and not self._holds(dataset_id):
            raise not_found(
                "DATASET_NOT_FOUND",
                f"this node holds no dataset {dataset_id!r} and its privacy ledger has no "
                "round on it; hanse privacy list shows the datasets it holds",
                dataset_id=dataset_id,
            )
        return pb.GetPrivacyBudgetResponse(
            budget=budget_pb(dataset_id, history, agreed_budgets(self._negotiations)),
            rounds=[round_pb(r) for r in history],
        )

    def _dataset_ids(self) -> Iterator[str]:
        after = ""
        while True:
            page = self._datasets.list_datasets(after_id=after, limit=_PAGE)
            yield from (d.id for d in page)
            if len(page) < _PAGE:
                return
            after = page[-1].id

    def _holds(self, dataset_id: str) -> bool:
        try:
            self._datasets.get_dataset(dataset_id)
        except ConnectorError:
            return False
        return True


def agreed_budgets(store: NegotiationStore) -> dict[str, AgreedBudget]:
    """What each of the node's provider-side agreements allows, by agreement id.

    An agreement is known by its DSP ``@id`` and by this node's negotiation id.
    """
    found: dict[str, AgreedBudget] = {}
    for record in _provider_records(store):
        budget = AgreedBudget(
            epsilon=_number(record.usage, "epsilon"),
            max_rounds=_whole(_number(record.usage, "max_rounds")),
        )
        found.setdefault(record.id, budget)
        agreement = agreement_id_of(record)
        if agreement:
            found.setdefault(agreement, budget)
    return found


def budget_pb(
    dataset_id: str, history: Sequence[LedgerRound], agreed: Mapping[str, AgreedBudget]
) -> pb.PrivacyBudget:
    """The budget of ``dataset_id`` from its ledger rounds (oldest first)."""
    message = pb.PrivacyBudget(dataset_id=dataset_id, rounds=len(history))
    if not history:
        return message
    newest = history[-1]
    message.epsilon_spent = newest.epsilon_after
    message.delta = newest.delta
    _stamp(message.last_spend_time, newest)
    spends: dict[str, pb.PrivacyAgreementSpend] = {}
    runs: dict[str, set[str]] = {}
    for entry in history:
        spend = spends.get(entry.agreement_id)
        if spend is None:
            terms = agreed.get(entry.agreement_id, AgreedBudget(None, None))
            spend = message.agreements.add(
                agreement_id=entry.agreement_id,
                agreed_epsilon=terms.epsilon or 0.0,
                agreed_max_rounds=terms.max_rounds or 0,
            )
            spends[entry.agreement_id] = spend
        spend.rounds_used += 1
        spend.epsilon_after = entry.epsilon_after
        runs.setdefault(entry.agreement_id, set()).add(entry.run_id)
        _stamp(spend.last_spend_time, entry)
    for agreement_id, spend in spends.items():
        spend.runs = len(runs[agreement_id])
    return message


def round_pb(entry: LedgerRound) -> pb.PrivacyRound:
    """One ledger round as the API gives it."""
    message = pb.PrivacyRound(
        seq=entry.seq,
        agreement_id=entry.agreement_id,
        run_id=entry.run_id,
        round=entry.round,
        noise_multiplier=entry.noise_multiplier,
        sample_rate=entry.sample_rate,
        steps=entry.steps,
        delta=entry.delta,
        epsilon_after=entry.epsilon_after,
    )
    _stamp(message.time, entry)
    return message


def _stamp(target: Any, entry: LedgerRound) -> None:
    stamp = timestamp(entry.time)
    if stamp is not None:
        target.CopyFrom(stamp)


def _provider_records(store: NegotiationStore) -> Iterator[NegotiationRecord]:
    before = ""
    while True:
        page = store.list_negotiations(limit=_PAGE, before=before)
        yield from (r for r in page if r.role == Role.PROVIDER)
        if len(page) < _PAGE:
            return
        before = page[-1].id


def _number(usage: Mapping[str, Any], key: str) -> float | None:
    value = usage.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _whole(value: float | None) -> int | None:
    return int(value) if value is not None and value.is_integer() else None
