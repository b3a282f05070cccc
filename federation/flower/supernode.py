"""A city's Flower SuperNode towards one aggregator, with the node's governed executor.

The SuperNode authenticates to the aggregator's SuperLink with the city node's own
key, verifies the SuperLink's certificate against the federation trust bundle, and
runs in process isolation: it never starts ClientApp code itself; the node's
:class:`~federation.flower.executor.GovernedExecutor` does, with the node's runner.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from federation.flower.executor import GovernedExecutor
from federation.flower.keys import write_openssh_private_key
from federation.flower.process import FlowerProcessError, ManagedProcess, flower_env, free_port


@dataclass(frozen=True)
class SuperNodeSettings:
    """Where a SuperNode connects and how it identifies itself."""

    superlink: str
    """``host:port`` of the aggregator's SuperLink."""
    trust_bundle: Path
    """Federation CA bundle (PEM) that must have issued the SuperLink's certificate."""
    node_key: Path
    """The city node's private key (PEM); converted for Flower's authentication."""
    state_dir: Path
    """Folder for the SuperNode's log, key copy and task logs."""
    runner_command: Sequence[str]
    """The governed runner's command line (see :class:`GovernedExecutor`)."""
    runner_env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for the runner."""
    node_config: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    """Flower node config handed to every ClientApp (for example the node name)."""
    start_timeout: float = 60.0
    """Seconds to wait for the runtime API to listen."""


class SuperNode:
    """A running SuperNode process plus the governed executor serving it."""

    def __init__(self, settings: SuperNodeSettings) -> None:
        self.settings = settings
        state = settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        key = write_openssh_private_key(settings.node_key.read_bytes(), state / "supernode.key")
        self.runtime_port = free_port()
        command = [
            "flower-supernode",
            "--superlink",
            settings.superlink,
            "--root-certificates",
            str(settings.trust_bundle),
            "--auth-supernode-private-key",
            str(key),
            "--isolation",
            "process",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.runtime_port),
        ]
        if settings.node_config:
            command += ["--node-config", _node_config_arg(settings.node_config)]
        env = flower_env(state / "flwr-home")
        self.process = ManagedProcess("SuperNode", command, env, state / "supernode.log")
        self.executor = GovernedExecutor(
            f"127.0.0.1:{self.runtime_port}",
            settings.runner_command,
            {**env, **settings.runner_env},
            state / "tasks",
        )
        try:
            self.process.wait_until(self._listening, settings.start_timeout, "listening")
        except FlowerProcessError:
            self.process.stop()
            raise
        self.executor.start()

    def _listening(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.runtime_port), timeout=1):
            return True

    def alive(self) -> bool:
        """Whether the SuperNode process is running."""
        return self.process.alive()

    def stop(self) -> None:
        """Stop the executor (and its runners), then the SuperNode."""
        self.executor.stop()
        self.process.stop()


def _node_config_arg(config: Mapping[str, str | int | float | bool]) -> str:
    parts = []
    for key, value in config.items():
        if isinstance(value, str):
            parts.append(f'{key}="{value}"')
        elif isinstance(value, bool):
            parts.append(f"{key}={'true' if value else 'false'}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)
