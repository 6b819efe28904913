"""The operator's admin API client against the real gateway admin API (a gateway process, embedded state)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from newapi_operator.controller.adminapi import AdminApiError, AdminClient
from newapi_operator.controller.keys import display_prefix, generate_key, key_hash

from .conftest import GatewayProcess


@pytest.fixture
async def admin(gateway: GatewayProcess) -> AsyncIterator[AdminClient]:
    async with httpx.AsyncClient() as http:
        yield AdminClient(gateway.admin_url, gateway.token, http)


async def test_register_a_key_by_hash_idempotently(admin: AdminClient, gateway: GatewayProcess) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    assert (await admin.put_customer(customer, "Ada"))["externalId"] == customer
    key = generate_key()
    attrs = {"tier": "pro", "rateLimit": {"rpm": 60}, "spendingCap": {"daily": 1000}, "allowedModels": [],
             "label": "ns/k"}
    first = await admin.create_key(customer, key_hash(key), display_prefix(key), attrs)
    again = await admin.create_key(customer, key_hash(key), display_prefix(key), attrs)
    assert first["keyId"] == again["keyId"]
    assert "key" not in first  # the gateway never sees nor returns a key it did not generate
    record = await admin.get_key(first["keyId"])
    assert record is not None
    assert (record["tier"], record["status"], record["keyPrefix"]) == ("pro", "active", display_prefix(key))
    async with httpx.AsyncClient() as http:  # the key works at the customer port
        rsp = await http.get(f"{gateway.url}/quota", headers={"Authorization": f"Bearer {key}"})
        assert rsp.status_code == 200, rsp.text
        assert rsp.json()["tier"] == "pro"


async def test_patch_suspend_resume_revoke(admin: AdminClient) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    await admin.put_customer(customer, None)
    key = generate_key()
    record = await admin.create_key(customer, key_hash(key), display_prefix(key), {"tier": "pro"})
    key_id = record["keyId"]
    patched = await admin.patch_key(key_id, {"tier": "enterprise", "spendingCap": {"monthly": 5}})
    assert patched["tier"] == "enterprise"
    assert patched["spendingCap"]["monthly"] == 5
    assert (await admin.suspend(key_id))["status"] == "suspended"
    assert (await admin.resume(key_id))["status"] == "active"
    assert (await admin.revoke(key_id) or {})["status"] == "revoked"
    assert (await admin.revoke(key_id) or {})["status"] == "revoked"  # idempotent
    with pytest.raises(AdminApiError) as err:
        await admin.suspend(key_id)
    assert err.value.status == 409


async def test_grant_is_idempotent_per_key(admin: AdminClient) -> None:
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    await admin.put_customer(customer, None)
    idem = f"grant:ns/k:{uuid.uuid4()}"
    status, entry = await admin.grant(customer, 5_000_000, idem, "test")
    assert status == 201
    status2, entry2 = await admin.grant(customer, 5_000_000, idem, "test")
    assert status2 == 200
    assert entry2["id"] == entry["id"]
    with pytest.raises(AdminApiError) as err:
        await admin.grant(customer, 6_000_000, idem, "test")
    assert err.value.status == 409
    assert (await admin.balance(customer))["balance"] == 5_000_000
    ledger = await admin.ledger(customer)
    assert [e["idempotencyKey"] for e in ledger["data"]] == [idem]


async def test_errors(admin: AdminClient, gateway: GatewayProcess) -> None:
    assert await admin.get_key("key_999999") is None
    assert await admin.revoke("key_999999") is None
    with pytest.raises(AdminApiError) as err:
        await admin.balance("nobody-" + uuid.uuid4().hex)
    assert err.value.status == 404
    async with httpx.AsyncClient() as http:
        wrong = AdminClient(gateway.admin_url, "not-the-token", http)
        with pytest.raises(AdminApiError) as err:
            await wrong.put_customer("x", None)
        assert err.value.status == 401
        assert not err.value.transient
        down = AdminClient("http://127.0.0.1:9", gateway.token, http)
        with pytest.raises(AdminApiError) as err:
            await down.put_customer("x", None)
        assert err.value.status == 0
        assert err.value.transient
