"""The node's executor: hands each ClientApp task to the node's own governed runner.

Flower's SuperNode (``--isolation process``) queues a task per message and waits for
an executor to take it. Flower's own executor would start ``flwr-clientapp``, which
installs and runs the researcher's code; this one starts the node's runner instead,
so everything that touches city data runs code the node owns.
"""

from __future__ import annotations

import logging
import math
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from flwr.proto.runtime_pb2 import AcquireTaskRequest
from flwr.supercore.constant import TaskType
from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient

_log = logging.getLogger(__name__)


class GovernedExecutor:
    """Polls a SuperNode's runtime API and starts one runner process per task."""

    def __init__(
        self,
        runtime_address: str,
        runner_command: Sequence[str],
        env: Mapping[str, str],
        log_dir: Path,
        poll_interval: float = 0.2,
        idle_poll_interval: float = 1.0,
        busy_for: float = 30.0,
    ) -> None:
        """Prepare the executor; :meth:`start` begins polling.

        Args:
            runtime_address: ``host:port`` of the SuperNode's runtime API (loopback).
            runner_command: the runner's command line; ``--runtime-api-address`` and
                ``--token`` are appended per task.
            env: the runner's environment.
            log_dir: folder for one log file per task.
            poll_interval: seconds between polls while a run goes on (a task came
                within ``busy_for`` seconds).
            idle_poll_interval: seconds between polls otherwise (Flower's SuperExec
                polls every second); each poll costs the SuperNode a request.
            busy_for: seconds after a task during which polls are frequent.
        """
        self.runtime_address = runtime_address
        self.runner_command = list(runner_command)
        self.env = dict(env)
        self.log_dir = log_dir
        self.poll_interval = poll_interval
        self.idle_poll_interval = max(idle_poll_interval, poll_interval)
        self.busy_for = busy_for
        self.launched = 0
        self._stop = threading.Event()
        self._children: list[subprocess.Popen[bytes]] = []
        self._thread = threading.Thread(target=self._loop, name="governed-executor", daemon=True)

    def start(self) -> None:
        """Start polling in a background thread."""
        self._thread.start()

    def _client(self) -> RuntimeHttpClient:
        invoker = make_simple_http_retry_invoker()
        invoker.max_tries = 3
        return RuntimeHttpClient.from_server_address(
            self.runtime_address,
            insecure=True,
            root_certificates=None,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec")],
            retry_invoker=invoker,
        )

    def _loop(self) -> None:
        client = self._client()
        last_task = -math.inf
        try:
            while not self._stop.is_set():
                try:
                    response = client.AcquireTask(
                        AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
                    )
                except Exception as exc:  # the SuperNode may be starting or stopping
                    _log.debug("acquire task failed: %s", exc)
                    self._stop.wait(1.0)
                    continue
                if response.HasField("task") and response.token:
                    self._launch(response.token, int(response.task.task_id))
                    last_task = time.monotonic()
                self._reap()
                busy = time.monotonic() - last_task < self.busy_for
                self._stop.wait(self.poll_interval if busy else self.idle_poll_interval)
        finally:
            client.close()

    def _launch(self, token: str, task_id: int) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        command = [
            *self.runner_command,
            "--runtime-api-address",
            self.runtime_address,
            "--token",
            token,
        ]
        with (self.log_dir / f"task-{task_id}.log").open("ab") as log:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self._children.append(child)
        self.launched += 1
        _log.info("started governed runner for task %s (pid %s)", task_id, child.pid)

    def _reap(self) -> None:
        self._children = [c for c in self._children if c.poll() is None]

    def stop(self, grace: float = 5.0) -> None:
        """Stop polling and end every runner still running."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=grace + 5)
        for child in self._children:
            if child.poll() is None:
                child.terminate()
        for child in self._children:
            try:
                child.wait(grace)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        self._children.clear()
