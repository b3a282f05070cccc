"""Start, watch and stop one Flower child process with its own log file."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from federation.flower.parent_guard import guarded_command


class FlowerProcessError(RuntimeError):
    """A Flower process did not start or stopped unexpectedly; the message says why."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (Flower's servers refuse port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def flower_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Flower children: our interpreter's scripts first, own FLWR_HOME.

    Flower starts helper commands (``flower-superexec``, ``flwr-serverapp``) by name,
    so the directory of this interpreter's console scripts goes first on ``PATH``.
    """
    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    env["FLWR_HOME"] = str(home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


class ManagedProcess:
    """One child process in its own process group, logging to a file.

    The child runs under :mod:`federation.flower.parent_guard`, so it ends when this
    process dies, even by SIGKILL: a node's Flower processes never outlive the node.
    """

    def __init__(self, name: str, command: Sequence[str], env: Mapping[str, str], log: Path):
        self.name = name
        self.command = list(command)
        self.log_path = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("ab")
        self._proc = subprocess.Popen(
            guarded_command(self.command),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The child's process id (its guard's; the guard leads the process group)."""
        return self._proc.pid

    def alive(self) -> bool:
        """Whether the child is still running."""
        return self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the child's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until it is true; fail if the child dies or ``timeout`` passes.

        Raises:
            FlowerProcessError: with the tail of the child's log.
        """
        deadline = time.monotonic() + timeout
        last_error = "no check ran"
        while time.monotonic() < deadline:
            if not self.alive():
                raise FlowerProcessError(
                    f"{self.name} exited with code {self._proc.returncode} before {what}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if ready():
                    return
            except Exception as exc:  # not ready yet: any error means try again
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise FlowerProcessError(
            f"{self.name} did not become {what} within {timeout:.0f} s ({last_error}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the child's process group, then SIGKILL after ``grace`` seconds."""
        try:
            if self._proc.poll() is None:
                _signal_group(self._proc.pid, signal.SIGTERM)
                try:
                    self._proc.wait(grace)
                except subprocess.TimeoutExpired:
                    _signal_group(self._proc.pid, signal.SIGKILL)
                    self._proc.wait(5)
            # Children Flower started in the same group (superexec, serverapp) go too.
            _signal_group(self._proc.pid, signal.SIGKILL)
            return self._proc.returncode
        finally:
            self._log.close()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
