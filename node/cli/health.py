"""``hanse health``: ask any gRPC health endpoint (used by probes and ``helm test``)."""

from __future__ import annotations

from pathlib import Path

import typer

from node.cli.output import console, fail, readable_errors
from node.health import check_health


def health(
    address: str = typer.Argument(
        ..., help="host:port of a node's health, protocol or management port."
    ),
    plaintext: bool = typer.Option(False, "--plaintext", help="No TLS (the health-only port)."),
    config: Path = typer.Option(
        None, "--config", "-c", envvar="HANSE_CONFIG", help="Node config for TLS material."
    ),
    service: str = typer.Option("", help="Service name to ask about (default: the node)."),
    timeout: float = typer.Option(5.0, help="Seconds to wait."),
) -> None:
    """Exit 0 when the endpoint reports SERVING, 1 otherwise."""
    tls = None
    if not plaintext:
        if config is None:
            raise fail("pass --plaintext for the health port, or --config for TLS ports", 2)
        from node.cli.output import load
        from node.server import load_node_tls

        with readable_errors():
            tls = load_node_tls(load(config))
    status = check_health(address, tls=tls, service=service, timeout=timeout)
    console.print(status, highlight=False)
    if status != "SERVING":
        raise typer.Exit(1)
