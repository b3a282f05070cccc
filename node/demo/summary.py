"""What the demo checks on every node after the run: budget spent, audit chains, bytes sent.

The demo runs the cities, so it reads each city's own database directly (read
only): its privacy ledger (epsilon spent on the dataset it trained on) and its
audit log (the chain verified as ``hanse audit verify`` does, and the size of every
reply that left the city during training: model updates and evaluation metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connector.store import SqlAuditLog, create_engine
from connector.store.ledger import SqlPrivacyLedger
from federation.guard.audit import METRICS_SENT, UPDATE_SENT
from node.config import LoadedConfig
from node.demo.contracts import ContractOutcome
from node.demo.federation import Federation

PAGE = 500
"""Audit entries read per query."""


@dataclass(frozen=True)
class CityBudget:
    """Privacy budget of one city's training dataset."""

    city: str
    """Node name."""
    dataset: str
    """The dataset it trained on."""
    spent: float
    """Epsilon its ledger records as spent on the dataset."""
    agreed: float
    """Epsilon its agreement allows."""


@dataclass(frozen=True)
class NodeAudit:
    """One node's audit chain, verified."""

    node: str
    """Node name."""
    ok: bool
    """Whether the chain verifies."""
    entries: int
    """Entries checked."""
    problem: str
    """What is wrong ("" if ok)."""


@dataclass(frozen=True)
class CityTraffic:
    """What left one city during training, from its audit log."""

    city: str
    """Node name."""
    updates: int
    """Model updates sent (``training.update.sent`` entries)."""
    update_bytes: int
    """Their bytes, summed."""
    metrics_bytes: int
    """Bytes of evaluation replies (``training.metrics.sent``): metrics only."""


def budgets(
    federation: Federation, outcomes: Sequence[ContractOutcome], epsilon: float
) -> list[CityBudget]:
    """Each city's spent epsilon on the dataset it trained on, next to the agreed one."""
    agreed = {o.city for o in outcomes if o.agreed}
    found = []
    for city in federation.cities:
        if city.plan.name not in agreed:
            continue
        ledger = SqlPrivacyLedger(create_engine(city.node.config.database_url()))
        dataset = city.plan.training_dataset
        found.append(CityBudget(city.plan.name, dataset, ledger.total_epsilon(dataset), epsilon))
    return found


def audits(federation: Federation) -> list[NodeAudit]:
    """Every node's audit chain verified (researcher first)."""
    nodes = [federation.researcher, *(c.node for c in federation.cities)]
    found = []
    for node in nodes:
        config = node.config
        result = _audit_log(config).verify()
        found.append(
            NodeAudit(config.model.node.name, result.ok, result.entries, result.problem or "")
        )
    return found


def traffic(federation: Federation) -> list[CityTraffic]:
    """Per city: the model updates and metrics replies that left it, with their bytes."""
    found = []
    for city in federation.cities:
        log = _audit_log(city.node.config)
        updates = update_bytes = metrics_bytes = 0
        after = 0
        while True:
            page = log.entries(after_seq=after, limit=PAGE, kind_prefix="training.")
            for entry in page:
                size = int(entry.payload.get("bytes", 0) or 0)
                if entry.kind == UPDATE_SENT:
                    updates += 1
                    update_bytes += size
                elif entry.kind == METRICS_SENT:
                    metrics_bytes += size
            if len(page) < PAGE:
                break
            after = page[-1].seq
        found.append(CityTraffic(city.plan.name, updates, update_bytes, metrics_bytes))
    return found


def _audit_log(config: LoadedConfig) -> SqlAuditLog:
    return SqlAuditLog(create_engine(config.database_url()))
