"""``hanse config check``: validate a node config file before starting the node."""

from __future__ import annotations

from pathlib import Path

import typer

from connector.identity import certificate_summary
from node.cli.output import console, readable_errors
from node.config import ConfigError, load_config

app = typer.Typer(help="Node configuration.", no_args_is_help=True)


@app.command("check")
def config_check(
    file: Path = typer.Argument(..., help="Node config file (YAML)."),
    schema_only: bool = typer.Option(
        False, "--schema-only", help="Check fields and policies only, not files on disk."
    ),
) -> None:
    """Validate fields, policies and (unless --schema-only) TLS, token and data files."""
    with readable_errors():
        loaded = load_config(file)
        if not schema_only:
            from node.server import load_node_tls

            tls = load_node_tls(loaded)
            loaded.admin_token()
            loaded.database_url()
            for index, dataset in enumerate(loaded.model.datasets):
                if dataset.path is not None and not loaded.resolve(dataset.path).is_file():
                    raise ConfigError(
                        loaded.path,
                        f"datasets[{index}].path",
                        f"{loaded.resolve(dataset.path)} does not exist or is not a file",
                    )
            info = certificate_summary(tls.cert_pem)
    model = loaded.model
    console.print(f"{file}: ok", highlight=False)
    console.print(
        f"  node {model.node.name} ({model.node.participant_id}); "
        f"{len(model.datasets)} datasets, "
        f"{sum(len(d.offers) for d in model.datasets)} offers, {len(model.peers)} peers",
        highlight=False,
    )
    if not schema_only:
        console.print(f"  certificate valid until {info.not_after:%Y-%m-%d}", highlight=False)
