"""Run a Flower process that ends when the node that started it dies.

``python -m federation.flower.parent_guard PARENT_PID -- COMMAND...`` starts
``COMMAND`` in the guard's own process group and waits for it. The guard ignores
SIGTERM and SIGINT (the node signals the whole group, so the command gets them) and
exits with the command's exit code. Every :data:`POLL_SECONDS` it checks that its
parent is still ``PARENT_PID``; once the parent is gone (for example a node killed
with SIGKILL, which cannot stop its children), it sends SIGTERM to the group, then
SIGKILL after :data:`GRACE_SECONDS`: a SuperNode or SuperLink never outlives its node.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

POLL_SECONDS = 0.5
"""How often the guard checks its parent."""
GRACE_SECONDS = 10.0
"""How long the command may take to exit after SIGTERM once the parent is gone."""
ORPHANED_EXIT = 70
"""The guard's exit code when its parent was gone before the command started."""


def guarded_command(command: Sequence[str], parent_pid: int | None = None) -> list[str]:
    """``command`` wrapped in the guard, watching ``parent_pid`` (this process by default)."""
    parent = os.getpid() if parent_pid is None else parent_pid
    return [sys.executable, "-m", __name__, str(parent), "--", *command]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command while the parent lives; its exit code (see the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--" or not args[0].isdigit():
        print("usage: python -m federation.flower.parent_guard PARENT_PID -- COMMAND...")
        return 2
    parent, command = int(args[0]), args[2:]
    if os.getppid() != parent:
        return ORPHANED_EXIT
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The command gets the default dispositions back, not the ignored ones.
    child = subprocess.Popen(command, restore_signals=True, preexec_fn=_default_signals)
    while True:
        try:
            code = child.wait(POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if os.getppid() == parent:
                continue
            return _end_group(child)
        return code if code >= 0 else 128 - code


def _default_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _end_group(child: subprocess.Popen[bytes]) -> int:
    """SIGTERM the group, SIGKILL it after the grace period; the guard's exit code."""
    os.killpg(0, signal.SIGTERM)
    try:
        child.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    else:
        time.sleep(0.5)  # the command's own helpers in the group, if any, a moment to exit
    os.killpg(0, signal.SIGKILL)  # ends the guard too
    return 1  # pragma: no cover - not reached


if __name__ == "__main__":
    sys.exit(main())
