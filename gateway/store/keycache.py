"""In-process TTL cache in front of key resolution (the hot path's only store read).

Entries live ``ttl`` seconds (default 1 s), so a revocation or suspension reaches every replica
within ``ttl`` even when the invalidation channel is down; the channel (Redis pub/sub, or a direct
call in embedded mode) makes it immediate. Unknown hashes are cached too (negative entries), so a
flood of wrong keys does not hit the database for every request; issuing a key drops them.

A generation counter guards against the classic race: a lookup that read the database *before*
an invalidation must not put its stale answer into the cache *after* the invalidation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from newapi_gateway.store.models import KeyRecord


class KeyCache:
    """hash -> KeyRecord | None with a TTL; invalidation by key id, negatives, or everything."""

    def __init__(self, ttl: float = 1.0, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        if ttl < 0:
            raise ValueError(f"key cache ttl must be >= 0 seconds, got {ttl}")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[bytes, tuple[float, KeyRecord | None]] = {}
        self._by_id: dict[int, bytes] = {}
        self._generation = 0
        self._negative_generation = 0
        self.hits = 0
        self.misses = 0

    def get(self, key_hash: bytes) -> tuple[bool, KeyRecord | None]:
        """``(True, record_or_None)`` on a fresh hit, ``(False, None)`` on a miss."""
        entry = self._entries.get(key_hash)
        if entry is not None:
            if entry[0] > self._clock():
                self.hits += 1
                return True, entry[1]
            self._drop(key_hash)
        self.misses += 1
        return False, None

    @property
    def generation(self) -> tuple[int, int]:
        """Read before a database lookup; pass to :meth:`put` with the result."""
        return self._generation, self._negative_generation

    def put(self, key_hash: bytes, record: KeyRecord | None, generation: tuple[int, int]) -> None:
        """Cache a lookup result unless a relevant invalidation happened since ``generation``.

        Positive results are discarded after a key invalidation; negative ones also after a
        "new key issued" invalidation (the lookup may predate the key).
        """
        if self.ttl == 0 or generation[0] != self._generation:
            return
        if record is None and generation[1] != self._negative_generation:
            return
        if len(self._entries) >= self.max_entries:
            # Evict the oldest tenth (dicts keep insertion order); cheap and good enough here.
            for old in list(self._entries)[: max(1, self.max_entries // 10)]:
                self._drop(old)
        self._entries[key_hash] = (self._clock() + self.ttl, record)
        if record is not None:
            self._by_id[record.id] = key_hash

    def _drop(self, key_hash: bytes) -> None:
        entry = self._entries.pop(key_hash, None)
        if entry is not None and entry[1] is not None and self._by_id.get(entry[1].id) == key_hash:
            del self._by_id[entry[1].id]

    def invalidate_key(self, key_id: int) -> None:
        self._generation += 1
        key_hash = self._by_id.pop(key_id, None)
        if key_hash is not None:
            self._entries.pop(key_hash, None)

    def invalidate_negative(self) -> None:
        self._negative_generation += 1
        for key_hash in [h for h, (_, rec) in self._entries.items() if rec is None]:
            del self._entries[key_hash]

    def clear(self) -> None:
        self._generation += 1
        self._negative_generation += 1
        self._entries.clear()
        self._by_id.clear()

    def __len__(self) -> int:
        return len(self._entries)

    # Messages of the invalidation channel --------------------------------------------------

    def apply_message(self, message: str) -> None:
        """Apply one invalidation message: ``k:<key id>``, ``neg`` or ``all``."""
        if message.startswith("k:"):
            try:
                self.invalidate_key(int(message[2:]))
            except ValueError:
                self.clear()
        elif message == "neg":
            self.invalidate_negative()
        else:
            self.clear()


def key_message(key_id: int) -> str:
    return f"k:{key_id}"


NEGATIVE_MESSAGE = "neg"
ALL_MESSAGE = "all"
