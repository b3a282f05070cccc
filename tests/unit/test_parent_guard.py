"""The parent guard: a Flower process ends when the node that started it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from federation.flower.parent_guard import ORPHANED_EXIT, guarded_command, main
from federation.flower.process import ManagedProcess

# A "node": starts a guarded child that would sleep a minute, prints the child's pid.
_NODE = """
import sys, time
from pathlib import Path
from federation.flower.process import ManagedProcess
p = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}, Path(sys.argv[1]))
print(p.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[3]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def test_the_guarded_process_dies_with_a_parent_killed_by_sigkill(tmp_path: Path) -> None:
    node = subprocess.Popen(
        [sys.executable, "-c", _NODE, str(tmp_path / "sleeper.log")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert node.stdout is not None
    guard = int(node.stdout.readline())
    deadline = time.monotonic() + 20
    while len(_group(guard)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_group(guard)) == 2  # the guard and the sleeper

    node.kill()
    node.wait(10)

    deadline = time.monotonic() + 20
    while _group(guard) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _group(guard) == []


def test_a_guarded_process_stops_and_reports_its_exit_code(tmp_path: Path) -> None:
    done = ManagedProcess(
        "exits", [sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "l"
    )
    deadline = time.monotonic() + 20
    while done.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert done.stop() == 3

    sleeper = ManagedProcess(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path / "s"
    )
    time.sleep(0.5)
    code = sleeper.stop(grace=10)
    assert code == 128 + signal.SIGTERM  # the group's SIGTERM reached the sleeper
    assert not _alive(sleeper.pid)


def test_a_guard_whose_parent_is_already_gone_starts_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    command = guarded_command([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], 1)
    assert command[:3] == [sys.executable, "-m", "federation.flower.parent_guard"]
    assert main(command[3:]) == ORPHANED_EXIT
    assert not marker.exists()


def test_the_guard_refuses_a_malformed_command_line() -> None:
    assert main(["not-a-pid", "--", "true"]) == 2
    assert main(["1", "true"]) == 2
