"""The demo's ``report.md``: what happened, rendered from a :class:`DemoResult`.

Rendering is pure (a result in, Markdown out), so it is tested on a fixed result.
Links are relative to the output folder that holds the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.demo.contracts import ContractOutcome
from node.demo.quality import QualityComparison
from node.demo.scenario import CityPlan
from node.demo.summary import CityBudget, CityTraffic, NodeAudit

SECTIONS = (
    "## What happened",
    "## Cities",
    "## Contracts",
    "## Training",
    "## Forecasting error (MAE)",
    "## Privacy budget",
    "## Audit logs",
    "## What left each city",
    "## Plots",
    "## Files",
)
"""The report's sections, in order."""


@dataclass(frozen=True)
class TrainingSummary:
    """The run's settings and where its files are."""

    run_id: str
    """The run's id on the researcher's node."""
    task_id: str
    """The task trained."""
    task_hash: str
    """Its content hash."""
    rounds: int
    """Rounds run."""
    epsilon: float
    """Epsilon each agreement allows."""
    delta: float
    """Delta each agreement states."""
    strategy: str
    """Aggregation strategy."""
    local_epochs: int
    """Local epochs per round."""
    batch_size: int
    """Examples per local step."""
    learning_rate: float
    """Local step size."""
    max_train_examples: int
    """Each city's cap on training examples."""
    seconds: float
    """Wall time of the run, from start to its end."""
    optimizer: str = "sgd"
    """The cities' local optimiser (sgd or adam)."""


@dataclass(frozen=True)
class DemoResult:
    """Everything the report shows."""

    cities: Sequence[CityPlan]
    """The cities and what they held."""
    contracts: Sequence[ContractOutcome]
    """Each negotiation's outcome."""
    refusals: Sequence[tuple[str, str]]
    """Other refused calls: what was tried, and the node's answer."""
    training: TrainingSummary
    """The run."""
    quality: QualityComparison
    """Held-out MAE: federated, local only, centralized."""
    budgets: Sequence[CityBudget]
    """Privacy budget per city."""
    audits: Sequence[NodeAudit]
    """Every node's audit chain."""
    traffic: Sequence[CityTraffic]
    """What left each city."""
    plots: Sequence[tuple[str, str]] = field(default_factory=tuple)
    """(title, relative path) of each plot."""
    files: Sequence[tuple[str, str]] = field(default_factory=tuple)
    """(what, relative path) of the other files."""


def render_report(result: DemoResult) -> str:
    """The report as Markdown."""
    agreed = [c for c in result.contracts if c.agreed]
    refused = [c for c in result.contracts if not c.agreed]
    countered = [c for c in agreed if c.outcome.startswith("countered")]
    quality = result.quality
    lines = [
        "# Hanse demo report",
        "",
        SECTIONS[0],
        "",
        f"{len(result.cities)} city nodes and a researcher node ran as separate processes on "
        "loopback, with certificates of one development federation CA. Each city kept its "
        "pedestrian counts on its own disk and published only metadata and usage policies.",
        f"The researcher asked every city for a training contract: {len(agreed)} agreed "
        f"({len(countered)} after a counter-offer), {len(refused)} request refused. It then "
        f"trained `{result.training.task_id}` for {result.training.rounds} rounds with "
        "differential privacy (DP-SGD) under the agreements: only model updates left the "
        "cities, every node checked its agreement before reading data, and every step is on "
        "each node's hash-chained audit log.",
        f"Mean held-out error (MAE, pedestrians per hour): federated "
        f"{quality.mean('federated'):.1f}, each city alone {quality.mean('local'):.1f}, "
        f"all data pooled {quality.mean('centralized'):.1f}.",
        "",
        SECTIONS[1],
        "",
        "| city | participant id | sensors | trains on |",
        "| --- | --- | --- | --- |",
    ]
    for city in result.cities:
        lines.append(
            f"| {city.name} | {city.participant_id} | {', '.join(city.sensors)} | "
            f"{city.training_dataset} |"
        )
    lines += [
        "",
        SECTIONS[2],
        "",
        "| city | dataset | asked | outcome | reason | agreement |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for contract in result.contracts:
        links = ", ".join(f"[{Path(f).name}]({f})" for f in contract.files) or "-"
        lines.append(
            f"| {contract.city} | {contract.dataset} | {contract.asked} | "
            f"**{contract.outcome}** | {_cell(contract.reason)} | {links} |"
        )
    lines += [
        "",
        "`<city>.json` is the agreement signed by both sides (check it offline with "
        "`hanse contract verify FILE --trust-bundle pki/ca.pem`); `<city>.dsp.json` is the "
        "DSP 2025-1 ContractAgreementMessage.",
    ]
    if result.refusals:
        lines += ["", "Other calls the nodes refused:", ""]
        lines += [f"- {label}: `{message}`" for label, message in result.refusals]
    training = result.training
    lines += [
        "",
        SECTIONS[3],
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| run | {training.run_id} |",
        f"| task | {training.task_id} ({training.task_hash}) |",
        f"| rounds | {training.rounds} |",
        f"| strategy | {training.strategy} |",
        f"| privacy | DP-SGD, epsilon {training.epsilon:g} and delta {training.delta:g} per city |",
        f"| local training | {training.optimizer}, {training.local_epochs} epoch(s) per round, "
        f"batch {training.batch_size}, learning rate {training.learning_rate:g} |",
        f"| training examples per city | at most {training.max_train_examples} |",
        f"| wall time | {training.seconds:.0f} s |",
        "",
        SECTIONS[4],
        "",
        "Held-out weeks of each city's own data, in pedestrians per hour (lower is better). "
        "Federated: the run's final model (DP). Alone: the city trains on its own data only. "
        "Pooled: one model on every city's data in one place, which the data space avoids.",
        "",
        "| city | federated (DP) | city alone | all data pooled |",
        "| --- | --- | --- | --- |",
    ]
    for name, mae in quality.federated.items():
        lines.append(
            f"| {name} | {mae:.1f} | {_get(quality.local, name)} | "
            f"{_get(quality.centralized, name)} |"
        )
    lines.append(
        f"| **mean** | **{quality.mean('federated'):.1f}** | **{quality.mean('local'):.1f}** | "
        f"**{quality.mean('centralized'):.1f}** |"
    )
    lines += [
        "",
        SECTIONS[5],
        "",
        "| city | dataset | epsilon spent | epsilon agreed |",
        "| --- | --- | --- | --- |",
    ]
    for budget in result.budgets:
        lines.append(
            f"| {budget.city} | {budget.dataset} | {budget.spent:.3f} | {budget.agreed:g} |"
        )
    lines += ["", SECTIONS[6], "", "| node | chain | entries |", "| --- | --- | --- |"]
    for audit in result.audits:
        state = "verifies" if audit.ok else f"**BROKEN**: {_cell(audit.problem)}"
        lines.append(f"| {audit.node} | {state} | {audit.entries} |")
    lines += [
        "",
        SECTIONS[7],
        "",
        "From each city's audit log: every reply that left it during training. Model "
        "updates carry weights only; evaluation replies carry metrics only. No rows of "
        "data left any city.",
        "",
        "| city | model updates | update bytes | metrics bytes |",
        "| --- | --- | --- | --- |",
    ]
    for sent in result.traffic:
        lines.append(
            f"| {sent.city} | {sent.updates} | {sent.update_bytes} | {sent.metrics_bytes} |"
        )
    lines += ["", SECTIONS[8], ""]
    lines += [f"![{title}]({path})" for title, path in result.plots] or ["(none)"]
    lines += ["", SECTIONS[9], ""]
    lines += [f"- {what}: [{path}]({path})" for what, path in result.files]
    lines += [
        "- signed agreements: `agreements/`",
        "- DSP 2025-1 catalogs: `catalogs/`",
        "- node logs (JSON lines): `logs/`",
        "- node folders (config, certificates, SQLite database): "
        + ", ".join(f"`{c.name}/`" for c in result.cities)
        + ", `researcher/`",
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _get(values: Mapping[str, float], city: str) -> str:
    return f"{values[city]:.1f}" if city in values else "-"
