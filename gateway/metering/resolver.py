"""Key resolution through the store: API key -> SHA-256 -> key record (in-process TTL cache) -> KeyInfo.

The store's cache (``Store.key_cache``, read directly; ``Store.resolve_missed_key`` on a miss) makes
the common case a dict lookup; a revocation or
suspension reaches every replica's cache within the cache TTL (1 s), at once through the
invalidation channel. An unknown key is ``None`` (401 ``invalid_api_key``); a revoked,
suspended or expired one is refused with a message saying which; an unreachable store is a 503
(fail closed: never "unknown key" because the database is down).
"""

from __future__ import annotations

import hashlib
from typing import Any

from newapi_gateway.errors import GatewayError
from newapi_gateway.keys import KeyInfo
from newapi_gateway.store import KeyRecord, Store, StoreUnavailable

from .errors import key_refused, store_unavailable
from .ids import format_key_id

#: ``KeyInfo.extra`` entry holding the store's :class:`KeyRecord`.
RECORD = "record"


def key_info(record: KeyRecord) -> KeyInfo:
    """The request pipeline's view of a key record."""
    s = record.settings
    extra: dict[str, Any] = {RECORD: record}
    return KeyInfo(
        key_id=format_key_id(record.id),
        customer_id=record.customer_external_id,
        tier=s.tier,
        allowed_models=frozenset(s.allowed_models),
        rpm=s.rpm,
        tpm=s.tpm,
        extra=extra,
    )


def record_of(key: KeyInfo) -> KeyRecord:
    """The store record behind a resolved key (only keys from :class:`StoreKeyResolver` have one)."""
    record = key.extra.get(RECORD)
    if not isinstance(record, KeyRecord):
        raise GatewayError(500, "This key was not resolved by the metering store.", "server_error", "internal_error")
    return record


class StoreKeyResolver:
    """The production :class:`~newapi_gateway.keys.KeyResolver`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # KeyInfo per key id, rebuilt when the store's cache hands out a new record object.
        self._infos: dict[int, tuple[KeyRecord, KeyInfo]] = {}

    async def resolve(self, api_key: str) -> KeyInfo | None:
        digest = hashlib.sha256(api_key.encode()).digest()
        # the store's cache first, without a coroutine (the hot path: a hit); a miss reads the store
        hit, record = self.store.key_cache.get(digest)
        if not hit:
            try:
                record = await self.store.resolve_missed_key(digest)
            except StoreUnavailable as exc:
                raise store_unavailable(exc) from None
        if record is None:
            return None
        if record.status != "active" or record.settings.expires_at is not None:
            reason = record.refusal()
            if reason is not None:
                raise key_refused(reason)
        cached = self._infos.get(record.id)
        if cached is not None and cached[0] is record:
            return cached[1]
        info = key_info(record)
        if len(self._infos) > 100_000:
            self._infos.clear()
        self._infos[record.id] = (record, info)
        return info
