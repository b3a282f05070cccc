"""Peers' catalog entries, kept for a few seconds so that a burst of negotiations asks once.

``StartNegotiation`` needs the offer it requests (the provider's policy, to which
the consumer adds its stated use). Asking the peer's catalog for it on every start
costs a round trip and the peer's catalog work; :class:`PeerDatasetCache` keeps each
answer for :data:`TTL_SECONDS`.

A stale entry can never lead to a wrong agreement: the provider checks the request
against its own current offer, and the consumer refuses an agreement whose terms
differ from the offer it requested. The caller looks again (:meth:`fetch`) whenever
the entry it got does not hold what it needs (an unknown offer id, a choice that is
not clear), so a new offer is found at once; only an offer deleted at the provider
within the last few seconds can still be requested, and the provider refuses it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from connector.peers import Peer, PeerClient
from connector.v1 import dataset_pb2

TTL_SECONDS = 2.0
"""How long an answer of a peer's catalog is used before it is asked again."""

MAX_ENTRIES = 1024
"""Entries kept at most; the oldest go first."""


class PeerDatasetCache:
    """Datasets of peers' catalogs (with their offers), each kept for a short time."""

    def __init__(
        self,
        peers: PeerClient,
        *,
        ttl: float = TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Ask through ``peers``.

        Args:
            peers: The client that reaches the peers' protocol APIs.
            ttl: Seconds an answer is kept; 0 asks every time.
            monotonic: Source of seconds for the expiry (injectable for tests).
        """
        if ttl < 0:
            raise ValueError(f"ttl must not be negative, not {ttl}")
        self._peers = peers
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], tuple[float, dataset_pb2.Dataset]] = {}
        self._asking: dict[tuple[str, str, str], threading.Lock] = {}

    def lookup(self, peer: Peer, dataset_id: str) -> tuple[dataset_pb2.Dataset, bool]:
        """The dataset as the peer's catalog shows it, and whether it was asked just now.

        A kept answer younger than the time to live is returned without asking;
        callers that find none at the same time wait for one look-up together.

        Raises:
            ConnectorError: As :meth:`PeerClient.dataset` (unknown dataset, peer
                unreachable, peer identity mismatch).
        """
        key = (peer.participant_id, peer.address, dataset_id)
        kept = self._kept(key)
        if kept is not None:
            return kept, False
        with self._lock:
            asking = self._asking.setdefault(key, threading.Lock())
        with asking:
            kept = self._kept(key)  # asked meanwhile by another caller
            if kept is not None:
                return kept, False
            try:
                return self.fetch(peer, dataset_id), True
            finally:
                with self._lock:
                    self._asking.pop(key, None)

    def _kept(self, key: tuple[str, str, str]) -> dataset_pb2.Dataset | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and self._monotonic() - entry[0] < self._ttl:
            return entry[1]
        return None

    def fetch(self, peer: Peer, dataset_id: str) -> dataset_pb2.Dataset:
        """Ask the peer's catalog now, and keep the answer.

        Raises:
            ConnectorError: As :meth:`PeerClient.dataset`.
        """
        key = (peer.participant_id, peer.address, dataset_id)
        dataset = self._peers.dataset(peer, dataset_id)
        if self._ttl > 0:
            with self._lock:
                self._entries.pop(key, None)
                self._entries[key] = (self._monotonic(), dataset)
                while len(self._entries) > MAX_ENTRIES:
                    del self._entries[next(iter(self._entries))]
        return dataset


__all__ = ["MAX_ENTRIES", "TTL_SECONDS", "PeerDatasetCache"]
