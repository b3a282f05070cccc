"""``hanse pki``: a development federation CA and node certificates."""

from __future__ import annotations

from pathlib import Path

import typer

from connector.identity import certificate_summary, init_ca, issue_certificate
from node.cli.output import console, print_json, readable_errors

app = typer.Typer(help="Development federation PKI (ECDSA P-256).", no_args_is_help=True)


@app.command("init")
def pki_init(
    out: Path = typer.Option(..., "--out", help="Folder for ca.pem and ca.key."),
    common_name: str = typer.Option("Hanse development federation CA", help="CA name."),
    days: int = typer.Option(3650, help="Days the CA is valid."),
    force: bool = typer.Option(False, help="Overwrite an existing CA."),
) -> None:
    """Create a development federation CA."""
    with readable_errors():
        files = init_ca(out, common_name=common_name, valid_days=days, force=force)
    console.print(f"CA written: {files.cert} (key {files.key}, keep it private)")


@app.command("issue")
def pki_issue(
    name: str = typer.Argument(..., help="Node name, also the file names NAME.pem/NAME.key."),
    participant_id: str = typer.Option(..., "--participant-id", help="URI, e.g. urn:hanse:city-a"),
    ca: Path = typer.Option(..., "--ca", help="Folder holding ca.pem and ca.key."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: the CA folder)."),
    dns: list[str] = typer.Option(["localhost"], "--dns", help="DNS SAN (repeatable)."),
    ip: list[str] = typer.Option(["127.0.0.1"], "--ip", help="IP SAN (repeatable)."),
    days: int = typer.Option(365, help="Days the certificate is valid."),
    force: bool = typer.Option(False, help="Overwrite existing files."),
) -> None:
    """Issue a node certificate and key signed by the federation CA."""
    with readable_errors():
        files = issue_certificate(
            ca,
            name,
            participant_id=participant_id,
            out_dir=out or ca,
            dns_names=dns,
            ip_addresses=ip,
            valid_days=days,
            force=force,
        )
    console.print(f"certificate written: {files.cert} (key {files.key}, trust bundle {files.ca})")


@app.command("show")
def pki_show(
    cert: Path = typer.Argument(..., help="PEM certificate."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a certificate's participant id, validity and fingerprint."""
    with readable_errors():
        info = certificate_summary(_read(cert))
    data = {
        "common_name": info.common_name,
        "participant_id": info.participant_id,
        "issuer": info.issuer_common_name,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "fingerprint_sha256": info.fingerprint_sha256,
    }
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        console.print(f"{key:20} {value}", highlight=False)


def _read(path: Path) -> bytes:
    from node.cli.output import fail

    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", 2) from exc
