"""The ``hanse`` command line: PKI, node set-up and start, catalog, datasets, offers, training."""

from __future__ import annotations

import sys

import typer

from node.cli import (
    audit,
    catalog,
    config_check,
    contracts,
    datasets,
    demo,
    health,
    node_cmds,
    pki,
    privacy,
    training,
)

app = typer.Typer(
    name="hanse",
    help="Hanse: a federated, sovereign data-space connector for cities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(pki.app, name="pki")
app.add_typer(node_cmds.app, name="node")
app.add_typer(config_check.app, name="config")
app.add_typer(datasets.dataset_app, name="dataset")
app.add_typer(datasets.offer_app, name="offer")
app.add_typer(contracts.app, name="contract")
app.add_typer(audit.app, name="audit")
app.add_typer(training.app, name="train")
app.add_typer(privacy.app, name="privacy")
app.command("catalog")(catalog.catalog)
app.command("peers")(catalog.peers)
app.command("health")(health.health)
app.command("demo")(demo.demo)


def main() -> None:
    """Entry point of the ``hanse`` console script."""
    sys.exit(app())


__all__ = ["app", "main"]
