"""``hanse demo`` end to end, and its clean shutdown when interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _node_processes(marker: Path) -> list[int]:
    """Pids of live processes whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(marker) in cmdline and "node start" in cmdline:
            found.append(int(entry.name))
    return found


def test_demo_runs_end_to_end_and_leaves_nothing_running(tmp_path: Path, dsp_validate) -> None:
    # Prepare
    out = tmp_path / "demo"

    # Execute
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "demo",
            "--out",
            str(out),
            "--cities",
            "2",
            "--sensors-per-city",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )

    # Assert
    assert result.returncode == 0, result.stderr
    report = (out / "report.md").read_text()
    assert "| city-a | urn:hanse:city-a | akl-ped-107-quay-street |" in report
    assert "[PEER_UNKNOWN]" in report and "[DATASET_NOT_FOUND]" in report
    assert "| city-a | akl-ped-107-quay-street | FINALIZED | agreements/city-a.json |" in report
    assert "POLICY_REFUSED" in report and "advertising" in report
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "node",
            "contract",
            "verify",
            str(out / "agreements" / "city-b.json"),
            "--trust-bundle",
            str(out / "pki" / "ca.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stderr
    for city in ("city-a", "city-b"):
        document = json.loads((out / "catalogs" / f"{city}.json").read_text())
        dsp_validate(document, "catalog/catalog-schema.json")
    assert f"report: {out / 'report.md'}" in result.stdout
    assert _node_processes(out) == []


def test_demo_interrupted_stops_every_node(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "demo"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "node",
            "demo",
            "--out",
            str(out),
            "--cities",
            "2",
            "--sensors-per-city",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_node_processes(out)) < 2:
            time.sleep(0.1)
        assert len(_node_processes(out)) >= 2, "the demo never started its nodes"

        # Execute
        process.send_signal(signal.SIGINT)
        _stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)

    # Assert
    assert process.returncode == 130, stderr
    assert "interrupted; every node started was stopped" in stderr
    assert _node_processes(out) == []
