"""Delivers pending negotiation messages: a small pool, one delivery per negotiation at a time.

A message that becomes due is handed to the dispatcher by the engine at once
(:attr:`NegotiationEngine.on_pending`) and delivered by a pool thread, so one slow
counter-party, or a peer busy with its own follow-up, does not hold up the other
negotiations. A negotiation is never delivered by two threads at once: a message
that becomes due while its negotiation's delivery is in flight is delivered right
after it (messages of one negotiation stay in order). A scanning thread finds
what is due in the store: retries after a backoff, messages left from before a
restart, work another replica added. The same thread saves the acknowledgements
the engine deferred (:attr:`NegotiationEngine.ack_grace`) once their grace ends, and
:meth:`Dispatcher.stop` saves those still waiting.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from connector.errors import ConnectorError
from connector.negotiation.engine import NegotiationEngine
from connector.negotiation.model import NegotiationRecord

_log = logging.getLogger("hanse.negotiation")

IDLE_SECONDS = 1.0
"""Longest sleep between looks at the store (other replicas may add work)."""

WORKERS = 8
"""Deliveries in flight at once (to different negotiations)."""

SCAN_LIMIT = 64
"""Negotiations looked at per scan of the store."""


class Dispatcher:
    """Delivers what :class:`NegotiationEngine` makes due, on a pool of threads."""

    def __init__(self, engine: NegotiationEngine, *, workers: int = WORKERS) -> None:
        """Serve ``engine``; nothing runs before :meth:`start`.

        Args:
            engine: The engine whose pending messages to deliver.
            workers: Deliveries in flight at once, at least 1.
        """
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="negotiation-dispatch", daemon=True)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="negotiation-send")
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        """Negotiations with a delivery queued or in flight."""
        self._again: set[str] = set()
        """Busy negotiations that got another due message meanwhile."""

    def start(self) -> None:
        """Take due messages from the engine and start scanning the store."""
        self._engine.on_pending = self.submit
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work; let the deliveries in flight finish (up to ``timeout``)."""
        self._engine.on_pending = None
        self._stop.set()
        self._engine.wake.set()
        self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._engine.settle_due(everything=True)

    def in_flight(self) -> frozenset[str]:
        """The negotiations with a delivery queued or in flight."""
        with self._lock:
            return frozenset(self._busy)

    def submit(self, record: NegotiationRecord) -> None:
        """Deliver ``record``'s pending message soon (after any delivery in flight for it)."""
        with self._lock:
            if self._stop.is_set():
                return
            if record.id in self._busy:
                self._again.add(record.id)
                return
            self._busy.add(record.id)
        try:
            self._pool.submit(self._work, record)
        except RuntimeError:  # shut down meanwhile: the next start finds it in the store
            with self._lock:
                self._busy.discard(record.id)

    def _work(self, record: NegotiationRecord) -> None:
        current: NegotiationRecord | None = record
        while current is not None:
            try:
                self._engine.deliver(current)
            except Exception:
                _log.exception("negotiation delivery failed", extra={"negotiation": record.id})
            current = self._next(record.id)

    def _next(self, negotiation_id: str) -> NegotiationRecord | None:
        """What to deliver next for this negotiation, or ``None`` (it is no longer busy)."""
        while True:
            with self._lock:
                if negotiation_id not in self._again or self._stop.is_set():
                    self._busy.discard(negotiation_id)
                    self._again.discard(negotiation_id)
                    return None
                self._again.discard(negotiation_id)
            try:
                current = self._engine.store.get(negotiation_id)
            except ConnectorError:
                continue
            at = current.next_attempt_at
            if (
                current.pending is not None
                and (at is None or at <= self._engine.clock.now())
                and not self._engine.is_unsettled(current)
            ):
                return current

    def _run(self) -> None:
        while not self._stop.is_set():
            self._engine.wake.clear()
            try:
                wait = self._scan()
                settle = self._engine.settle_due()
                if settle is not None:
                    wait = min(wait, settle)
            except Exception:
                _log.exception("negotiation dispatch failed; retrying")
                wait = IDLE_SECONDS
            self._engine.wake.wait(wait)

    def _scan(self) -> float:
        """Submit what is due and not in flight; return the seconds until the next is due."""
        now = self._engine.clock.now()
        horizon = now + timedelta(seconds=IDLE_SECONDS)
        wait = IDLE_SECONDS
        for record in self._engine.store.due(horizon, SCAN_LIMIT):
            with self._lock:
                if record.id in self._busy:
                    continue
            if self._engine.is_unsettled(record):
                continue  # delivered; its acknowledgement is saved when the grace ends
            at = record.next_attempt_at
            if at is None or at <= now:
                self.submit(record)
            else:
                wait = min(wait, (at - now).total_seconds())
        return max(0.0, wait)
