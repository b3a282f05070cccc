"""The aggregator's Flower SuperLink: TLS, SuperNode authentication, registered keys only.

The SuperLink serves its Fleet, Control and ServerApp runtime APIs on one HTTPS port.
The node starts it with its own certificate, turns SuperNode authentication on, and
registers exactly the city keys named by its finalized agreements.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.cli.cli_client_interceptor import CliClientHttpInterceptor
from flwr.common.serde import fab_to_proto, user_config_to_proto
from flwr.proto.control_pb2 import (
    ListNodesRequest,
    ListRunsRequest,
    RegisterNodeRequest,
    StartRunRequest,
    StopRunRequest,
    UnregisterNodeRequest,
)
from flwr.supercore.control.control_http_client import ControlHttpClient
from flwr.supercore.fab import Fab
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor

from federation.flower.process import FlowerProcessError, ManagedProcess, flower_env, free_port


@dataclass(frozen=True)
class SuperLinkSettings:
    """Where and how a SuperLink runs."""

    cert: Path
    """The aggregator node's TLS certificate (PEM)."""
    key: Path
    """The aggregator node's TLS key (PEM)."""
    ca: Path
    """The federation trust bundle (PEM)."""
    state_dir: Path
    """Folder for the SuperLink's database, FLWR_HOME and log."""
    host: str = "127.0.0.1"
    """Interface the HTTPS port binds to."""
    port: int = 0
    """HTTPS port; 0 picks a free one."""
    start_timeout: float = 60.0
    """Seconds to wait for the Control API to answer."""


@dataclass(frozen=True)
class RunStatus:
    """A Flower run's status as the SuperLink reports it."""

    run_id: int
    status: str
    """``pending``, ``starting``, ``running`` or ``finished``."""
    sub_status: str
    """For a finished run: ``completed``, ``failed`` or ``stopped``."""
    details: str

    @property
    def finished(self) -> bool:
        """Whether the run has ended, however it ended."""
        return self.status == "finished"


class SuperLink:
    """A running SuperLink process and a Control API client to it."""

    def __init__(self, settings: SuperLinkSettings) -> None:
        self.settings = settings
        self.port = settings.port or free_port(settings.host)
        state = settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        command = [
            "flower-superlink",
            "--ssl-ca-certfile",
            str(settings.ca),
            "--ssl-certfile",
            str(settings.cert),
            "--ssl-keyfile",
            str(settings.key),
            "--enable-supernode-auth",
            "--disable-runtime-dependency-installation",
            "--host",
            settings.host,
            "--port",
            str(self.port),
            "--database",
            str(state / "superlink.db"),
        ]
        self.process = ManagedProcess(
            "SuperLink", command, flower_env(state / "flwr-home"), state / "superlink.log"
        )
        self._control = ControlHttpClient.from_server_address(
            f"{settings.host}:{self.port}",
            insecure=False,
            root_certificates=str(settings.ca),
            interceptors=[
                CliClientHttpInterceptor(),
                RuntimeVersionHttpInterceptor(component_name="flwr CLI"),
            ],
        )
        try:
            self.process.wait_until(self._answers, settings.start_timeout, "serving")
        except FlowerProcessError:
            self.stop()
            raise

    @property
    def address(self) -> str:
        """``host:port`` of the Fleet API, for SuperNodes."""
        return f"{self.settings.host}:{self.port}"

    def _answers(self) -> bool:
        self._control.ListRuns(ListRunsRequest())
        return True

    def register_node(self, public_key_pem: bytes, name: str) -> int:
        """Register a SuperNode's public key; returns its node id.

        A key already registered keeps its node id.
        """
        for node in self._control.ListNodes(ListNodesRequest()).nodes_info:
            if node.public_key == public_key_pem and node.status != "unregistered":
                return int(node.node_id)
        response = self._control.RegisterNode(
            RegisterNodeRequest(public_key=public_key_pem, name=name)
        )
        return int(response.node_id)

    def unregister_node(self, node_id: int) -> None:
        """Remove a SuperNode; its key can no longer connect."""
        self._control.UnregisterNode(UnregisterNodeRequest(node_id=node_id))

    def nodes(self) -> list[dict[str, Any]]:
        """The registered SuperNodes: node id, name, status, online."""
        return [
            {"node_id": int(n.node_id), "name": n.name, "status": n.status}
            for n in self._control.ListNodes(ListNodesRequest()).nodes_info
        ]

    def start_run(self, fab: bytes, config: dict[str, Any]) -> int:
        """Submit a run of the FAB ``fab`` with run config ``config``; returns the run id."""
        proto = fab_to_proto(Fab(hashlib.sha256(fab).hexdigest(), fab, {}))
        response = self._control.StartRun(
            StartRunRequest(fab=proto, override_config=user_config_to_proto(config))
        )
        if not response.HasField("run_id"):
            raise FlowerProcessError("the SuperLink did not start the run")
        return int(response.run_id)

    def run_status(self, run_id: int) -> RunStatus:
        """The run's current status."""
        runs = self._control.ListRuns(ListRunsRequest(run_id=run_id)).run_dict
        if run_id not in runs:
            raise KeyError(f"run {run_id} is unknown to the SuperLink")
        status = runs[run_id].status
        return RunStatus(run_id, status.status, status.sub_status, status.details)

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run."""
        self._control.StopRun(StopRunRequest(run_id=run_id))

    def stop(self) -> None:
        """Stop the SuperLink and every process it started."""
        self._control.close()
        self.process.stop()
