"""``hanse demo`` from start to end: nodes, catalogs, contracts, training, summary, report.

Every node process the demo starts is stopped when it ends (also on Ctrl-C,
SIGTERM or failure) unless ``--keep-running`` is given and the demo got to its end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from connector.dsp import catalog_to_dsp
from connector.errors import ConnectorError, from_rpc_error
from connector.identity import (
    LoadedTLS,
    TLSFiles,
    channel_credentials,
    init_ca,
    issue_certificate,
    load_tls,
)
from connector.v1 import catalog_protocol_pb2, catalog_protocol_pb2_grpc, peer_management_pb2
from federation.tasks import load_task
from node.demo.contracts import DELTA, ContractOutcome, negotiate
from node.demo.federation import MAX_TRAIN_EXAMPLES, Federation, start_federation
from node.demo.options import MARKER, OPTIMIZER, DemoOptions
from node.demo.plots import plot_forecast_week, plot_learning_curves
from node.demo.quality import CitySite, QualityComparison, QualitySettings, compare_quality
from node.demo.report import DemoResult, TrainingSummary, render_report
from node.demo.scenario import plan_cities
from node.demo.summary import CityBudget, CityTraffic, NodeAudit, audits, budgets, traffic
from node.demo.training import announce_started, follow_training, start_training
from node.supervisor import RunningNode
from node.training_data import series_source

TASK = "forecast-next-hour"
"""The task the demo trains."""
COPIED = ("metrics.json", "progress.jsonl", "spec.json", "model.pt")
"""Files of the run's folder copied into ``training/``."""


def run_demo(options: DemoOptions, console: Console) -> Path:
    """Run the demo; return the report path.

    Raises:
        DemoOptionError: an option is out of range.
        NodeStartError: a node did not start.
        KeyboardInterrupt: interrupted (every node started is stopped first).
    """
    options.check()
    out = _fresh_folder(options.out)
    plans = plan_cities(options)
    task = load_task(TASK)

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    console.rule("[bold]Hanse demo: cities keep their data and train a forecaster together")
    say(f"output folder: {out}")
    init_ca(out / "pki", common_name="Hanse demo federation CA")
    say("development federation CA created (ECDSA P-256) in pki/")

    running: list[RunningNode] = []
    with ExitStack() as stack:
        keep = False

        def stop_all() -> None:
            if keep:
                return
            if running:
                say(f"stopping {len(running)} nodes ...")
            for node in reversed(running):
                node.stop()
            _leftovers(out, console)

        stack.callback(stop_all)
        console.rule("Nodes")
        federation = start_federation(out, plans, running, say)

        console.rule("Catalogs, read by the researcher through its own node")
        _catalogs(out, federation, console)

        console.rule("Usage contracts for training")
        contracts = negotiate(out, federation, task, options.rounds, options.epsilon, say)
        console.print(_contract_table(contracts))
        refusals = _refusals(out, federation)
        for label, message in refusals:
            say(f"[red]refused[/] {label}: {message}")

        console.rule("Federated training with differential privacy, under the agreements")
        agreed = [c for c in contracts if c.agreed]
        began = time.monotonic()
        started = start_training(
            federation.researcher, task.id, [c.negotiation_id for c in agreed], options.rounds
        )
        announce_started(console, started)
        names = {c.plan.participant_id: c.plan.name for c in federation.cities}
        final = follow_training(federation.researcher, started.run_id, names, console)
        seconds = time.monotonic() - began
        say(f"training run {final.run_id} completed in {seconds:.0f}s")
        training_files = _copy_run(Path(final.folder), out / "training")

        console.rule("How good is the federated model?")
        sites = [
            CitySite(
                city=c.plan.name,
                participant_id=c.plan.participant_id,
                sensor=c.plan.training_sensor,
                source=series_source(c.node.config, c.plan.training_dataset),
            )
            for c in federation.cities
            if c.plan.name in {a.city for a in agreed}
        ]
        quality = compare_quality(
            task,
            Path(final.model_path),
            sites,
            QualitySettings(
                rounds=options.rounds,
                local_epochs=final.local_epochs,
                batch_size=final.batch_size,
                learning_rate=final.learning_rate,
                optimizer=OPTIMIZER,
                max_train_examples=MAX_TRAIN_EXAMPLES,
            ),
            progress=lambda line: say(f"  {line}"),
        )
        metrics = json.loads((out / "training" / "metrics.json").read_text(encoding="utf-8"))
        plots = [
            (
                "Learning curves",
                plot_learning_curves(
                    metrics, names, out / "plots" / "learning-curves.png", local=quality.local
                ),
            ),
            (
                f"Forecast against actual, one week of {quality.week.sensor}",
                plot_forecast_week(quality.week, out / "plots" / "forecast-week.png"),
            ),
        ]

        console.rule("Summary")
        spent = budgets(federation, contracts, options.epsilon)
        chains = audits(federation)
        sent = traffic(federation)
        console.print(_summary_table(quality, spent, sent))
        console.print(_audit_table(chains))
        result = DemoResult(
            cities=plans,
            contracts=contracts,
            refusals=refusals,
            training=TrainingSummary(
                run_id=final.run_id,
                task_id=final.task_id,
                task_hash=final.task_hash,
                rounds=final.rounds,
                epsilon=options.epsilon,
                delta=DELTA,
                strategy=final.strategy,
                local_epochs=final.local_epochs,
                batch_size=final.batch_size,
                learning_rate=final.learning_rate,
                max_train_examples=MAX_TRAIN_EXAMPLES,
                seconds=seconds,
                optimizer=final.optimizer,
            ),
            quality=quality,
            budgets=spent,
            audits=chains,
            traffic=sent,
            plots=[(title, str(path.relative_to(out))) for title, path in plots],
            files=[(name, f"training/{name}") for name in training_files],
        )
        report = out / "report.md"
        report.write_text(render_report(result), encoding="utf-8")
        if options.keep_running:
            keep = True
            _explain_running(out, federation, final.run_id, console)
    console.rule("Done")
    say(f"report: {report}")
    return report


def _fresh_folder(path: Path) -> Path:
    out = path.resolve()
    if (out / MARKER).is_file():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by 'hanse demo'; it replaces this folder\n")
    return out


def _catalogs(out: Path, federation: Federation, console: Console) -> None:
    folder = out / "catalogs"
    folder.mkdir(exist_ok=True)
    table = Table("city", "participant", "datasets", "offers")
    with federation.researcher.client() as client:
        for city in federation.cities:
            catalog = client.call(
                client.peers.GetPeerCatalog,
                peer_management_pb2.GetPeerCatalogRequest(peer=city.plan.name),
            ).catalog
            (folder / f"{city.plan.name}.json").write_text(
                json.dumps(catalog_to_dsp(catalog), indent=2) + "\n", encoding="utf-8"
            )
            table.add_row(
                city.plan.name,
                catalog.participant_id,
                ", ".join(d.id for d in catalog.datasets),
                str(sum(len(d.offers) for d in catalog.datasets)),
            )
    console.print(table)


def _contract_table(contracts: Sequence[ContractOutcome]) -> Table:
    table = Table("city", "dataset", "outcome", "reason")
    for contract in contracts:
        style = "green" if contract.agreed else "red"
        table.add_row(
            contract.city,
            contract.dataset,
            f"[{style}]{contract.outcome}[/]",
            contract.reason,
        )
    return table


def _refusals(out: Path, federation: Federation) -> list[tuple[str, str]]:
    """Two more refusals, each with the node's reason."""
    city = federation.cities[0]
    name = city.plan.name
    found: list[tuple[str, str]] = []
    with federation.researcher.client() as client:
        try:
            client.call(
                client.peers.GetPeerDataset,
                peer_management_pb2.GetPeerDatasetRequest(peer=name, dataset_id="raw-rows"),
            )
        except ConnectorError as exc:
            found.append((f"a dataset {name} does not offer", str(exc)))
    intruder = _foreign_identity(out)
    with grpc.secure_channel(city.node.protocol, channel_credentials(intruder)) as channel:
        stub = catalog_protocol_pb2_grpc.CatalogProtocolServiceStub(channel)
        try:
            stub.GetCatalog(catalog_protocol_pb2.GetCatalogRequest(), timeout=10)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            found.append(
                (
                    f"a certificate from a foreign CA at {name}'s protocol port",
                    f"TLS handshake refused ({error.code.name})",
                )
            )
    return found


def _foreign_identity(out: Path) -> LoadedTLS:
    foreign = out / "foreign-pki"
    init_ca(foreign, common_name="Not the federation")
    files = issue_certificate(
        foreign, "intruder", participant_id="urn:example:intruder", out_dir=foreign
    )
    return load_tls(TLSFiles(files.cert, foreign / "intruder.key", out / "pki" / "ca.pem"))


def _copy_run(folder: Path, target: Path) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in COPIED:
        if (folder / name).is_file():
            shutil.copy2(folder / name, target / name)
            copied.append(name)
    return copied


def _summary_table(
    quality: QualityComparison, spent: Sequence[CityBudget], sent: Sequence[CityTraffic]
) -> Table:
    budget = {b.city: b for b in spent}
    bytes_sent = {t.city: t for t in sent}
    table = Table(
        "city",
        "MAE federated (DP)",
        "MAE alone",
        "MAE pooled",
        "epsilon spent / agreed",
        "updates sent",
        title="Forecasting error (pedestrians/hour, held out), privacy budget, bytes sent",
    )
    for city, federated in quality.federated.items():
        b = budget.get(city)
        t = bytes_sent.get(city)
        table.add_row(
            city,
            f"{federated:.1f}",
            f"{quality.local.get(city, float('nan')):.1f}",
            f"{quality.centralized.get(city, float('nan')):.1f}",
            f"{b.spent:.3f} / {b.agreed:g}" if b else "-",
            f"{t.updates} ({t.update_bytes} B)" if t else "-",
        )
    table.add_row(
        "mean",
        f"{quality.mean('federated'):.1f}",
        f"{quality.mean('local'):.1f}",
        f"{quality.mean('centralized'):.1f}",
        "",
        "",
        style="bold",
    )
    return table


def _audit_table(chains: Sequence[NodeAudit]) -> Table:
    table = Table("node", "audit chain", "entries", title="Audit logs")
    for chain in chains:
        state = "[green]verifies[/]" if chain.ok else f"[red]BROKEN: {chain.problem}[/]"
        table.add_row(chain.node, state, str(chain.entries))
    return table


def _explain_running(out: Path, federation: Federation, run_id: str, console: Console) -> None:
    config = federation.researcher.config_path
    city = federation.cities[0]
    lines = [
        "nodes left running; explore with, for example:",
        f"  hanse train show {run_id} --config {config}",
        f"  hanse contract list --config {config}",
        f"  hanse catalog {city.plan.name} --config {config}",
        f"  hanse audit list --config {city.node.config_path}",
        f"  hanse audit verify --config {city.node.config_path}",
        "stop them with:",
        "  kill "
        + " ".join(
            str(n.process.pid)
            for n in [federation.researcher, *(c.node for c in federation.cities)]
        ),
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
    (out / "nodes.pid").write_text(
        "\n".join(
            str(n.process.pid)
            for n in [federation.researcher, *(c.node for c in federation.cities)]
        )
        + "\n"
    )


def leftover_processes(out: Path) -> list[int]:
    """Pids of live processes whose command line names ``out``, but for this one's ancestors.

    That is, the nodes and what they started (Flower SuperLink, SuperNodes, runners).
    """
    marker = str(out).encode()
    ancestors = _ancestors(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ancestors:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = _stat(int(entry.name))[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _stat(pid: int) -> list[str]:
    """``/proc/PID/stat`` after the command name: state, parent pid, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _ancestors(pid: int) -> set[int]:
    found = {pid}
    while pid > 1:
        try:
            pid = int(_stat(pid)[1])
        except (OSError, IndexError, ValueError):
            break
        found.add(pid)
    return found


def _leftovers(out: Path, console: Console) -> None:
    left = leftover_processes(out)
    if not left:
        console.print("every node stopped; no process of the demo is left", highlight=False)
        return
    console.print(f"[red]processes left after the nodes stopped: {left}; killing them[/]")
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
