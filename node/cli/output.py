"""How the CLI speaks: one readable error line and a non-zero exit; tables; JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from connector.errors import ConnectorError
from connector.identity import IdentityError, PkiError
from connector.store import StoreError
from node.config import ConfigError, LoadedConfig, config_path, load_config

console = Console()
errors = Console(stderr=True)

EXIT_FAILED = 1
"""The operation was refused or failed."""
EXIT_CONFIG = 2
"""Bad configuration or arguments."""


def fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit to raise."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def readable_errors() -> Iterator[None]:
    """Turn the project's errors into one line on stderr and an exit code."""
    try:
        yield
    except ConfigError as exc:
        raise fail(str(exc), EXIT_CONFIG) from exc
    except (PkiError, IdentityError, StoreError) as exc:
        raise fail(str(exc), EXIT_CONFIG) from exc
    except ConnectorError as exc:
        detail = "".join(f"; {v.field}: {v.description}" for v in exc.violations if v.field)
        raise fail(f"{exc.message} [{exc.reason}]{detail}") from exc


def load(config: Path | None) -> LoadedConfig:
    """Load the config named by ``--config`` or ``$HANSE_CONFIG``."""
    return load_config(config_path(config))


def print_json(data: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """A readable table on stdout."""
    view = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*row)
    console.print(view)


ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    envvar="HANSE_CONFIG",
    help="Node config file (or set HANSE_CONFIG).",
    show_default=False,
)

Handler = Callable[..., None]
