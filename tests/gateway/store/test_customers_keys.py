"""Customers and keys, against both stores."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from newapi_gateway.store.base import Store
from newapi_gateway.store.errors import Conflict, NotFound
from newapi_gateway.store.keys import generate_key, hash_key
from newapi_gateway.store.models import KeySettings
from tests.gateway.store.conftest import AccountFactory


async def test_upsert_customer_is_idempotent_by_external_id(store: Store) -> None:
    a = await store.upsert_customer("portal-uuid-1", "Alice")
    b = await store.upsert_customer("portal-uuid-1")
    c = await store.upsert_customer("portal-uuid-1", "Alice Cooper")
    assert a.id == b.id == c.id
    assert b.display_name == "Alice"  # None keeps the stored name
    assert c.display_name == "Alice Cooper"
    assert (await store.get_customer("portal-uuid-1")) == c
    assert (await store.get_customer_by_id(a.id)) == c
    assert await store.get_customer("nobody") is None
    snap = await store.balance(a.id)
    assert (snap.balance, snap.held, snap.available) == (0, 0, 0)


async def test_issue_and_resolve_stores_only_the_hash(store: Store) -> None:
    customer = await store.upsert_customer("c1")
    new = generate_key()
    settings = KeySettings(
        tier="pro", rpm=60, tpm=10_000, cap_daily=5_000_000, cap_monthly=50_000_000,
        allowed_models=("gpt-4o-mini", "qwen3-coder"),
        expires_at=datetime(2099, 1, 1, tzinfo=UTC),
    )
    issued = await store.issue_key(customer.id, new.hash, new.prefix, settings)
    assert issued.settings == settings
    assert issued.status == "active"
    assert issued.rotation == 0
    assert issued.prefix == new.secret[:11]
    assert new.secret.startswith("sk-")
    resolved = await store.resolve_key(hash_key(new.secret))
    assert resolved == issued
    assert resolved.customer_external_id == "c1"
    assert resolved.refusal() is None
    assert resolved.allows_model("qwen3-coder")
    assert not resolved.allows_model("gpt-5")
    assert await store.resolve_key(hash_key("sk-wrong")) is None
    assert await store.get_key(issued.id) == issued
    assert await store.list_keys(customer.id) == [issued]


async def test_issue_rejects_duplicates_and_unknown_customers(store: Store) -> None:
    customer = await store.upsert_customer("c1")
    new = generate_key()
    await store.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="free"))
    with pytest.raises(Conflict):
        await store.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="free"))
    with pytest.raises(NotFound):
        await store.issue_key(customer.id + 100, generate_key().hash, "sk-x", KeySettings(tier="free"))
    with pytest.raises(ValueError, match="key_hash"):
        await store.issue_key(customer.id, b"short", "sk-x", KeySettings(tier="free"))


async def test_a_negative_lookup_does_not_hide_a_key_issued_afterwards(store: Store) -> None:
    customer = await store.upsert_customer("c1")
    new = generate_key()
    assert await store.resolve_key(new.hash) is None  # cached as unknown
    await store.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier="free"))
    assert (await store.resolve_key(new.hash)) is not None


async def test_suspend_resume_revoke(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account()
    h = hash_key(acct.secret)
    assert (await store.resolve_key(h)).refusal() is None  # cached now
    assert (await store.suspend_key(acct.key.id)).status == "suspended"
    assert (await store.resolve_key(h)).refusal() == "suspended"  # same process: immediate
    assert (await store.resume_key(acct.key.id)).status == "active"
    assert (await store.resolve_key(h)).refusal() is None
    assert (await store.revoke_key(acct.key.id)).status == "revoked"
    assert (await store.resolve_key(h)).refusal() == "revoked"
    with pytest.raises(Conflict, match="final"):
        await store.resume_key(acct.key.id)
    with pytest.raises(Conflict, match="revoked"):
        await store.rotate_key(acct.key.id, generate_key().hash, "sk-new")
    with pytest.raises(NotFound):
        await store.suspend_key(999_999)
    with pytest.raises(ValueError, match="status"):
        await store.set_key_status(acct.key.id, "deleted")


async def test_rotation_replaces_the_secret_and_keeps_identity(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account(credit=1000, rpm=5)
    old = hash_key(acct.secret)
    assert await store.resolve_key(old) is not None
    new = generate_key()
    rotated = await store.rotate_key(acct.key.id, new.hash, new.prefix)
    assert rotated.id == acct.key.id
    assert rotated.rotation == 1
    assert rotated.prefix == new.prefix
    assert rotated.settings == acct.key.settings
    assert await store.resolve_key(old) is None
    assert (await store.resolve_key(new.hash)) == rotated


async def test_expiry_and_settings_update(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account()
    past = datetime.now(UTC) - timedelta(seconds=1)
    updated = await store.update_key(acct.key.id, KeySettings(tier="enterprise", rpm=100, expires_at=past))
    assert updated.settings.tier == "enterprise"
    assert updated.settings.rpm == 100
    resolved = await store.resolve_key(hash_key(acct.secret))
    assert resolved is not None
    assert resolved.refusal() == "expired"
    with pytest.raises(NotFound):
        await store.update_key(424242, KeySettings(tier="pro"))


def test_key_settings_validate_fields() -> None:
    with pytest.raises(ValueError, match="rpm"):
        KeySettings(tier="pro", rpm=0)
    with pytest.raises(ValueError, match="cap_daily"):
        KeySettings(tier="pro", cap_daily=-1)
    with pytest.raises(ValueError, match="tier"):
        KeySettings(tier="")
    with pytest.raises(ValueError, match="timezone"):
        KeySettings(tier="pro", expires_at=datetime(2030, 1, 1))


async def test_cache_serves_hits_without_the_database(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account()
    h = hash_key(acct.secret)
    await store.resolve_key(h)
    hits = store.key_cache.hits
    for _ in range(10):
        await store.resolve_key(h)
    assert store.key_cache.hits == hits + 10


async def test_concurrent_cache_misses_share_one_database_read(store: Store, make_account: AccountFactory) -> None:
    """An expired entry under load: every request of the key misses at once; one read serves them all."""
    acct = await make_account()
    h = hash_key(acct.secret)
    await asyncio.sleep(0.3)  # the key's "issued" message on the invalidation channel (PostgreSQL + Redis) is in
    store.key_cache.invalidate_key(acct.key.id)
    before = store.key_lookups
    records = await asyncio.gather(*(store.resolve_key(h) for _ in range(50)))
    assert store.key_lookups == before + 1
    assert {r.id for r in records if r is not None} == {acct.key.id}
    assert None not in records
    # an invalidation while a read is in flight: later callers do not join it (it may predate a revocation)
    store.key_cache.invalidate_key(acct.key.id)
    first = asyncio.ensure_future(store.resolve_key(h))
    await asyncio.sleep(0)  # its read is in flight
    store.key_cache.invalidate_key(acct.key.id)
    revoked = await store.revoke_key(acct.key.id)
    after = await store.resolve_key(h)
    assert after is not None
    assert after.status == revoked.status == "revoked"
    await first


async def test_a_caller_going_away_does_not_cancel_the_shared_read(store: Store, make_account: AccountFactory) -> None:
    acct = await make_account()
    h = hash_key(acct.secret)
    store.key_cache.invalidate_key(acct.key.id)
    leaver = asyncio.ensure_future(store.resolve_key(h))
    stayer = asyncio.ensure_future(store.resolve_key(h))
    await asyncio.sleep(0)
    leaver.cancel()
    record = await stayer
    assert record is not None
    assert record.id == acct.key.id
    assert leaver.cancelled()


async def test_the_resolver_reads_the_cache_first_and_the_store_only_on_a_miss(
    store: Store, make_account: AccountFactory
) -> None:
    """``StoreKeyResolver``: a cache hit is answered without the database; a miss (expired or
    invalidated entry) reads it once and caches the record again; a revocation is seen at once."""
    from newapi_gateway.errors import GatewayError
    from newapi_gateway.metering.resolver import StoreKeyResolver, record_of

    acct = await make_account()
    await asyncio.sleep(0.3)  # the key's "issued" message on the invalidation channel (PostgreSQL + Redis) is in
    resolver = StoreKeyResolver(store)
    store.key_cache.invalidate_key(acct.key.id)
    before = store.key_lookups
    first = await resolver.resolve(acct.secret)
    assert first is not None
    assert record_of(first).id == acct.key.id
    assert store.key_lookups == before + 1  # the miss read the store
    hits = store.key_cache.hits
    for _ in range(5):
        assert await resolver.resolve(acct.secret) is first  # same record: the same KeyInfo
    assert store.key_lookups == before + 1
    assert store.key_cache.hits == hits + 5
    assert await resolver.resolve(generate_key().secret) is None  # unknown: None (401 upstream of here)
    await store.revoke_key(acct.key.id)  # invalidates the cache entry
    with pytest.raises(GatewayError) as refused:
        await resolver.resolve(acct.secret)
    assert refused.value.status == 401
    assert "revoked" in str(refused.value)
