"""A small thread-safe least-recently-used cache with a fixed capacity.

Used where a value is costly to compute from immutable input and is asked for again and
again (parsed certificates and keys, verified certificate chains: see
:mod:`connector.signing`). A value is computed outside the lock, so two threads that
miss at once may both compute it; the cache keeps the later one. Failures are never
cached: only what :meth:`BoundedCache.put` is given.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class CacheInfo:
    """How a :class:`BoundedCache` has been used since it was made or last cleared."""

    name: str
    """What the cache holds."""
    size: int
    """Entries held now."""
    capacity: int
    """Most entries it ever holds; the least recently used one goes first."""
    hits: int
    """Look-ups that found an entry."""
    misses: int
    """Look-ups that found none."""


class BoundedCache(Generic[K, V]):
    """A map of at most ``capacity`` entries that forgets the least recently used first.

    Every method may be called from any thread.
    """

    def __init__(self, name: str, capacity: int) -> None:
        """Make an empty cache.

        Args:
            name: What it holds (for :meth:`info`).
            capacity: Most entries held at once, at least 1.

        Raises:
            ValueError: ``capacity`` is below 1.
        """
        if capacity < 1:
            raise ValueError(f"a cache needs a capacity of at least 1, not {capacity}")
        self._name = name
        self._capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get(self, key: K) -> V | None:
        """The value kept for ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            try:
                value = self._entries[key]
            except KeyError:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` for ``key``, forgetting the least recently used entry when full."""
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        """Forget ``key`` if it is kept."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every entry and reset the counters."""
        with self._lock:
            self._entries.clear()
            self._hits = 0
            self._misses = 0

    def info(self) -> CacheInfo:
        """Its size, capacity and counters now."""
        with self._lock:
            return CacheInfo(
                name=self._name,
                size=len(self._entries),
                capacity=self._capacity,
                hits=self._hits,
                misses=self._misses,
            )
