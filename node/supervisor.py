"""Start and stop node processes: used by ``hanse demo`` and the integration tests.

Each node runs as ``python -m node node start --config FILE`` in its own process
group. A node counts as started once it has written its ``endpoints.json`` (with
its own pid) and its management API answers health checks with ``SERVING``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from connector.identity import LoadedTLS
from node.client import NodeClient
from node.config import LoadedConfig, load_config
from node.endpoints import Endpoints, connectable, read_endpoints
from node.health import check_health
from node.server import load_node_tls

START_TIMEOUT = 60.0
"""Seconds a node may take to serve."""
STOP_TIMEOUT = 20.0
"""Seconds a node may take to drain and exit after SIGTERM before it is killed."""


class NodeStartError(RuntimeError):
    """A node process exited, or did not serve in time; the message holds its log tail."""


@dataclass
class RunningNode:
    """A node process started by :func:`start_node`."""

    config_path: Path
    """Its config file."""
    process: subprocess.Popen[bytes]
    """The process."""
    log_path: Path
    """Where its stdout and stderr go."""
    endpoints: Endpoints
    """The addresses it listens on."""

    @property
    def config(self) -> LoadedConfig:
        """Its config, loaded afresh."""
        return load_config(self.config_path)

    @property
    def protocol(self) -> str:
        """Its protocol API, connectable from this machine."""
        return connectable(self.endpoints.protocol)

    @property
    def management(self) -> str:
        """Its management API, connectable from this machine."""
        return connectable(self.endpoints.management)

    @property
    def participant_id(self) -> str:
        """Its participant id."""
        return self.config.model.node.participant_id

    def client(self, timeout: float = 15.0) -> NodeClient:
        """A management client for it (close it, or use it in a ``with``)."""
        return NodeClient(self.config, timeout=timeout)

    def log(self) -> str:
        """Everything it has logged."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal it, wait (killing the group after :data:`STOP_TIMEOUT`); return its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT)
        return self.process.returncode


def start_node(
    config_path: Path, log_path: Path, *, cwd: Path | None = None, timeout: float = START_TIMEOUT
) -> RunningNode:
    """Start a node process and wait until it serves.

    Raises:
        NodeStartError: it exited or did not serve within ``timeout``.
    """
    loaded = load_config(config_path)
    loaded.endpoints_file.unlink(missing_ok=True)
    tls = load_node_tls(loaded)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "node", "start", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )
    try:
        return _wait_serving(config_path, log_path, loaded, tls, process, timeout)
    except BaseException:
        # Failed, timed out or interrupted while starting: leave no process behind.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
        raise


def _wait_serving(
    config_path: Path,
    log_path: Path,
    loaded: LoadedConfig,
    tls: LoadedTLS,
    process: subprocess.Popen[bytes],
    timeout: float,
) -> RunningNode:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise NodeStartError(f"node {config_path} exited with {process.returncode}:\n{tail}")
        endpoints = read_endpoints(loaded.endpoints_file)
        if endpoints is not None and endpoints.pid == process.pid:
            node = RunningNode(config_path, process, log_path, endpoints)
            if check_health(node.management, tls=tls, timeout=2.0) == "SERVING":
                return node
        time.sleep(0.1)
    raise NodeStartError(f"node {config_path} did not serve within {timeout:.0f}s; see {log_path}")
