"""Changes to this node's negotiations, published as they are saved, for watchers.

The engine publishes every negotiation it saves to its :class:`NegotiationChanges`;
a watcher (the management API's ``WatchManagedNegotiation``) subscribes to one
negotiation and wakes on each change instead of polling the store. Only changes
made by this process are published: a watcher should still look at the store now
and then, for changes another replica made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from connector.negotiation.model import NegotiationRecord


class Subscription:
    """One watcher's view of one negotiation: the newest version published since it looked."""

    def __init__(self, negotiation_id: str) -> None:
        self.negotiation_id = negotiation_id
        """The negotiation watched."""
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._newest: NegotiationRecord | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the feed was closed (the node is stopping)."""
        return self._closed

    def offer(self, record: NegotiationRecord) -> None:
        """Take a published version (an older one than already held is ignored)."""
        with self._lock:
            if self._newest is None or record.version > self._newest.version:
                self._newest = record
            self._event.set()

    def close(self) -> None:
        """Wake the watcher for good: nothing more will be published."""
        with self._lock:
            self._closed = True
            self._event.set()

    def next(self, timeout: float) -> NegotiationRecord | None:
        """The newest version published since the last call, waiting up to ``timeout`` s.

        Returns:
            That version, or ``None`` when nothing was published in time (or the
            feed was closed).
        """
        self._event.wait(timeout)
        with self._lock:
            if not self._closed:
                self._event.clear()
            newest, self._newest = self._newest, None
        return newest


class NegotiationChanges:
    """Publishes saved negotiations to the subscriptions on them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._closed = False

    def publish(self, record: NegotiationRecord) -> None:
        """Tell the watchers of ``record.id`` about this version of it."""
        with self._lock:
            watching = tuple(self._subscriptions.get(record.id, ()))
        for subscription in watching:
            subscription.offer(record)

    @contextmanager
    def subscribe(self, negotiation_id: str) -> Iterator[Subscription]:
        """Watch one negotiation for the duration of the ``with`` block."""
        subscription = Subscription(negotiation_id)
        with self._lock:
            if self._closed:
                subscription.close()
            self._subscriptions.setdefault(negotiation_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            with self._lock:
                watching = self._subscriptions.get(negotiation_id)
                if watching is not None:
                    watching.discard(subscription)
                    if not watching:
                        del self._subscriptions[negotiation_id]

    def watching(self) -> int:
        """How many subscriptions are open."""
        with self._lock:
            return sum(len(watching) for watching in self._subscriptions.values())

    def close(self) -> None:
        """End every subscription, now and later (the node is stopping)."""
        with self._lock:
            self._closed = True
            subscriptions = [s for watching in self._subscriptions.values() for s in watching]
        for subscription in subscriptions:
            subscription.close()


__all__ = ["NegotiationChanges", "Subscription"]
