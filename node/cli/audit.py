"""``hanse audit``: read and verify a node's hash-chained audit log."""

from __future__ import annotations

from pathlib import Path

import typer

from connector.store import SqlAuditLog, create_engine
from node.cli.output import ConfigOption, console, fail, load, print_json, readable_errors, table

app = typer.Typer(help="The node's tamper-evident audit log.", no_args_is_help=True)


def _log(config: Path | None) -> SqlAuditLog:
    loaded = load(config)
    return SqlAuditLog(create_engine(loaded.database_url()))


@app.command("verify")
def audit_verify(config: Path = ConfigOption) -> None:
    """Check the whole chain: an edited, deleted, reordered or truncated entry fails."""
    with readable_errors():
        result = _log(config).verify()
    if not result.ok:
        raise fail(f"audit log does not verify: {result.problem}")
    console.print(f"audit log verifies: {result.entries} entries, chain intact", highlight=False)


@app.command("list")
def audit_list(
    subject: str = typer.Option("", help="Only entries about this negotiation or dataset."),
    kind: str = typer.Option("", help="Only kinds starting with this, e.g. negotiation."),
    limit: int = typer.Option(100, help="Most entries."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    config: Path = ConfigOption,
) -> None:
    """List audit entries, oldest first."""
    with readable_errors():
        entries = _log(config).entries(limit=limit, subject=subject, kind_prefix=kind)
    if as_json:
        print_json(
            [
                {
                    "seq": e.seq,
                    "time": e.time.isoformat(),
                    "kind": e.kind,
                    "actor": e.actor,
                    "peer": e.peer,
                    "subject": e.subject,
                    "payload": e.payload,
                    "hash": e.hash,
                }
                for e in entries
            ]
        )
        return
    table(
        "audit",
        ["seq", "time", "kind", "peer", "subject"],
        [[str(e.seq), e.time.strftime("%H:%M:%S"), e.kind, e.peer, e.subject] for e in entries],
    )
