"""A background thread that delivers pending negotiation messages."""

from __future__ import annotations

import logging
import threading

from connector.negotiation.engine import NegotiationEngine

_log = logging.getLogger("hanse.negotiation")

IDLE_SECONDS = 1.0
"""Longest sleep between looks at the store (other replicas may add work)."""


class Dispatcher:
    """Runs :meth:`NegotiationEngine.dispatch_due` whenever work is due."""

    def __init__(self, engine: NegotiationEngine) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="negotiation-dispatch", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to stop after the delivery in hand; wait for it."""
        self._stop.set()
        self._engine.wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._engine.wake.clear()
            try:
                while self._engine.dispatch_due() and not self._stop.is_set():
                    pass
                wait = self._engine.next_due_in()
            except Exception:
                _log.exception("negotiation dispatch failed; retrying")
                wait = IDLE_SECONDS
            self._engine.wake.wait(IDLE_SECONDS if wait is None else min(wait, IDLE_SECONDS))
