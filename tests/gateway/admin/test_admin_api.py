"""The admin API (docs/admin-api.md) over HTTP on the admin listener, on both state back ends:
customers, one-call signup, keys (caller hash or generated, patch, suspend/resume/revoke, rotate),
credit with idempotency (also under concurrent retries), balance, ledger pages, usage rollups,
and the operator's own client against it."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest

from newapi_gateway.admin import AdminExtension
from newapi_gateway.admin.openapi import document
from newapi_gateway.compliance.admin_api import ROUTES as COMPLIANCE_ROUTES
from newapi_gateway.compliance.admin_api import SCHEMAS as COMPLIANCE_SCHEMAS
from newapi_gateway.store.keys import generate_key
from newapi_operator.api.v1alpha1 import CustomerKeySpec
from newapi_operator.controller.adminapi import AdminClient
from newapi_operator.controller.keys import attribute_patch, display_prefix, key_attributes, key_hash
from newapi_operator.controller.keys import generate_key as operator_generate_key
from tests.gateway.metering.metered import ADMIN_TOKEN, PAID_MODEL, Admin, MeteredGateway, poll


def chat_status(gw: MeteredGateway, key: str) -> int:
    return httpx.post(gw.base_url + "/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": PAID_MODEL, "messages": [{"role": "user", "content": "admin test"}],
                            "max_tokens": 5}).status_code


def error_of(rsp: httpx.Response) -> dict[str, Any]:
    doc: dict[str, Any] = rsp.json()["error"]
    assert set(doc) == {"message", "type", "param", "code"}
    return doc


# -- customers -------------------------------------------------------------------------------------


def test_customers(admin: Admin, gateway: MeteredGateway) -> None:
    ext = f"cust-{gateway.backend.name}-0b9e4c1e-6f1d-4a0e-9c0e-5d3f2a1b7c8d"
    created = admin.ok("PUT", f"/customers/{ext}", {"displayName": "Acme"})
    assert (created["externalId"], created["displayName"]) == (ext, "Acme")
    assert created["createdAt"].endswith("Z")
    assert admin.ok("PUT", f"/customers/{ext}", {})["displayName"] == "Acme"  # absent = unchanged
    assert admin.ok("PUT", f"/customers/{ext}", {"displayName": "Acme GmbH"})["displayName"] == "Acme GmbH"
    got = admin.ok("GET", f"/customers/{ext}")
    assert got["balance"] == {"balance": 0, "held": 0, "available": 0, "spentToday": 0, "spentThisMonth": 0,
                              "requestsToday": 0}
    missing = admin.call("GET", "/customers/nobody-here")
    assert missing.status_code == 404
    assert error_of(missing)["param"] == "externalId"
    assert admin.call("PUT", f"/customers/{ext}", {"displayName": 5}).status_code == 400


# -- keys ------------------------------------------------------------------------------------------


def test_keys_with_a_caller_generated_hash(admin: Admin, gateway: MeteredGateway, customer: str) -> None:
    key = generate_key()
    body = {"keyHash": key.hash.hex(), "keyPrefix": key.prefix, "tier": "pro", "rateLimit": {"rpm": 60},
            "spendingCap": {"daily": 1_000_000}, "allowedModels": [PAID_MODEL], "label": "ns/ck"}
    rsp = admin.call("POST", f"/customers/{customer}/keys", body)
    assert rsp.status_code == 201, rsp.text
    record = rsp.json()
    assert "key" not in record  # the caller has it
    assert record["keyId"].startswith("key_")
    assert {k: record[k] for k in ("externalId", "keyPrefix", "tier", "status", "label")} == {
        "externalId": customer, "keyPrefix": key.prefix, "tier": "pro", "status": "active", "label": "ns/ck"}
    assert record["rateLimit"] == {"rpm": 60, "tpm": None}
    assert record["spendingCap"] == {"daily": 1_000_000, "monthly": None}
    assert record["allowedModels"] == [PAID_MODEL]
    again = admin.call("POST", f"/customers/{customer}/keys", body)
    assert (again.status_code, again.json()["keyId"]) == (200, record["keyId"])  # idempotent by hash
    other = admin.ok("PUT", f"/customers/{customer}-other", {})["externalId"]
    assert admin.call("POST", f"/customers/{other}/keys", body).status_code == 409
    admin.ok("POST", f"/customers/{customer}/credits", {"amount": 1000, "idempotencyKey": "k"})
    assert chat_status(gateway, key.secret) == 200
    assert admin.ok("GET", f"/keys/{record['keyId']}") == record

    for bad, param in (({"tier": "pro", "keyHash": "abc"}, "keyHash"), ({"rateLimit": {"rpm": 1}}, "tier"),
                       ({"tier": "pro", "rateLimit": {"rpm": 0}}, "rateLimit.rpm"),
                       ({"tier": "pro", "expiresAt": "tomorrow"}, "expiresAt")):
        rsp = admin.call("POST", f"/customers/{customer}/keys", bad)
        assert rsp.status_code == 400, bad
        assert error_of(rsp)["param"] == param
    assert admin.call("POST", "/customers/nobody-here/keys", {"tier": "pro"}).status_code == 404
    assert admin.call("GET", "/keys/key_999999").status_code == 404
    assert admin.call("GET", "/keys/not-a-key").status_code == 404


def test_generated_key_is_returned_once(admin: Admin, gateway: MeteredGateway, customer: str) -> None:
    rsp = admin.call("POST", f"/customers/{customer}/keys", {"tier": "pro"})
    assert rsp.status_code == 201
    record = rsp.json()
    secret = record.pop("key")
    assert secret.startswith("sk-")
    assert record["keyPrefix"] == secret[:11]
    assert "key" not in admin.ok("GET", f"/keys/{record['keyId']}")
    admin.ok("POST", f"/customers/{customer}/credits", {"amount": 1000, "idempotencyKey": "g"})
    assert chat_status(gateway, secret) == 200


def test_patch_key(admin: Admin, customer: str) -> None:
    record = admin.ok("POST", f"/customers/{customer}/keys", {"tier": "pro", "rateLimit": {"rpm": 5, "tpm": 9}})
    path = f"/keys/{record['keyId']}"
    patched = admin.ok("PATCH", path, {"rateLimit": {"rpm": 7}, "label": "team-a",
                                       "expiresAt": "2031-02-03T04:05:06Z", "tier": "free"})
    assert patched["rateLimit"] == {"rpm": 7, "tpm": None}  # objects are replaced as a whole
    assert (patched["label"], patched["expiresAt"], patched["tier"]) == ("team-a", "2031-02-03T04:05:06Z", "free")
    assert admin.ok("GET", path) == patched
    cleared = admin.ok("PATCH", path, {"label": None, "expiresAt": None, "rateLimit": None, "allowedModels": ["x"]})
    assert (cleared["label"], cleared["expiresAt"], cleared["rateLimit"]) == (None, None, {"rpm": None, "tpm": None})
    assert cleared["allowedModels"] == ["x"]
    assert admin.ok("PATCH", path, {})["tier"] == "free"  # nothing to change
    rsp = admin.call("PATCH", path, {"status": "revoked"})
    assert rsp.status_code == 400
    assert error_of(rsp)["param"] == "status"


def test_suspend_resume_revoke(admin: Admin, gateway: MeteredGateway, customer: str) -> None:
    admin.ok("POST", f"/customers/{customer}/credits", {"amount": 10_000, "idempotencyKey": "s"})
    record = admin.ok("POST", f"/customers/{customer}/keys", {"tier": "pro"})
    key, path = record["key"], f"/keys/{record['keyId']}"
    assert chat_status(gateway, key) == 200
    assert admin.ok("POST", path + "/suspend")["status"] == "suspended"
    assert poll(lambda: chat_status(gateway, key) == 401, timeout=2, what="suspended key refused")
    assert admin.ok("POST", path + "/resume")["status"] == "active"
    assert poll(lambda: chat_status(gateway, key) == 200, timeout=2, what="resumed key served")
    assert admin.ok("POST", path + "/revoke")["status"] == "revoked"
    assert admin.ok("POST", path + "/revoke")["status"] == "revoked"  # idempotent
    assert poll(lambda: chat_status(gateway, key) == 401, timeout=2, what="revoked key refused")
    rsp = admin.call("POST", path + "/resume")
    assert rsp.status_code == 409
    assert error_of(rsp)["code"] == "key_revoked"


def test_rotate(admin: Admin, gateway: MeteredGateway, customer: str) -> None:
    admin.ok("POST", f"/customers/{customer}/credits", {"amount": 10_000, "idempotencyKey": "r"})
    old = admin.ok("POST", f"/customers/{customer}/keys", {"tier": "pro", "rateLimit": {"rpm": 100},
                                                         "label": "rotating"})
    rsp = admin.call("POST", f"/keys/{old['keyId']}/rotate")
    assert rsp.status_code == 201
    new = rsp.json()
    assert new["keyId"] != old["keyId"]
    assert new["key"] != old["key"]
    assert (new["rateLimit"], new["label"], new["status"]) == ({"rpm": 100, "tpm": None}, "rotating", "active")
    assert admin.ok("GET", f"/keys/{old['keyId']}")["status"] == "revoked"
    assert chat_status(gateway, new["key"]) == 200
    assert poll(lambda: chat_status(gateway, old["key"]) == 401, timeout=2, what="old key refused")
    mine = generate_key()
    by_hash = admin.call("POST", f"/keys/{new['keyId']}/rotate", {"keyHash": mine.hash.hex(),
                                                                   "keyPrefix": mine.prefix})
    assert by_hash.status_code == 201
    assert "key" not in by_hash.json()
    assert chat_status(gateway, mine.secret) == 200
    assert admin.call("POST", f"/keys/{old['keyId']}/rotate").status_code == 409


# -- credit ----------------------------------------------------------------------------------------


def test_credits_are_idempotent(admin: Admin, customer: str) -> None:
    path = f"/customers/{customer}/credits"
    first = admin.call("POST", path, {"amount": 5_000_000, "idempotencyKey": "topup-1", "reason": "invoice 7"})
    assert first.status_code == 201
    entry = first.json()
    assert {k: entry[k] for k in ("kind", "amount", "balanceAfter", "idempotencyKey", "reason", "keyId")} == {
        "kind": "top_up", "amount": 5_000_000, "balanceAfter": 5_000_000, "idempotencyKey": "topup-1",
        "reason": "invoice 7", "keyId": None}
    replay = admin.call("POST", path, {"amount": 5_000_000, "idempotencyKey": "topup-1", "reason": "invoice 7"})
    assert (replay.status_code, replay.json()) == (200, entry)
    conflict = admin.call("POST", path, {"amount": 6_000_000, "idempotencyKey": "topup-1"})
    assert conflict.status_code == 409
    assert error_of(conflict)["code"] == "idempotency_conflict"
    adjusted = admin.call("POST", path, {"amount": -1_000_000, "idempotencyKey": "fix-1"})
    assert adjusted.status_code == 201
    assert (adjusted.json()["kind"], adjusted.json()["balanceAfter"]) == ("adjust", 4_000_000)
    assert admin.balance(customer)["balance"] == 4_000_000
    for bad, param in (({"amount": 0, "idempotencyKey": "z"}, "amount"), ({"amount": 1}, "idempotencyKey"),
                       ({"amount": "5", "idempotencyKey": "z"}, "amount"), ({"amount": True, "idempotencyKey": "z"},
                                                                          "amount")):
        rsp = admin.call("POST", path, bad)
        assert rsp.status_code == 400, bad
        assert error_of(rsp)["param"] == param
    assert admin.call("POST", "/customers/nobody-here/credits", {"amount": 1, "idempotencyKey": "x"}).status_code == 404


def test_top_up_under_concurrent_retries_is_applied_once(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    async def retries() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.admin_url, timeout=30,
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            body = {"amount": 1_234_567, "idempotencyKey": "payment-42"}
            return await asyncio.gather(*(http.post(f"/api/v1/admin/customers/{customer}/credits", json=body)
                                          for _ in range(20)))

    answers = asyncio.run(retries())
    assert {r.status_code for r in answers} <= {200, 201}
    assert len({r.json()["id"] for r in answers}) == 1
    assert admin.balance(customer)["balance"] == 1_234_567
    assert len(admin.ledger(customer)) == 1


def test_ledger_pages_newest_first(admin: Admin, customer: str) -> None:
    for n in range(5):
        admin.ok("POST", f"/customers/{customer}/credits", {"amount": n + 1, "idempotencyKey": f"p{n}"})
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = admin.ok("GET", f"/customers/{customer}/ledger", **params)
        seen += [e["amount"] for e in page["data"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    assert pages == 3
    assert admin.call("GET", f"/customers/{customer}/ledger", cursor="bogus").status_code == 400
    assert admin.call("GET", f"/customers/{customer}/ledger", limit=0).status_code == 400


def test_usage_per_key_per_day_per_model(admin: Admin, gateway: MeteredGateway, customer: str) -> None:
    admin.ok("POST", f"/customers/{customer}/credits", {"amount": 100_000, "idempotencyKey": "u"})
    record = admin.ok("POST", f"/customers/{customer}/keys", {"tier": "pro"})
    for _ in range(3):
        assert chat_status(gateway, record["key"]) == 200
    path = f"/keys/{record['keyId']}/usage"
    rows = poll(lambda: (d := admin.ok("GET", path)["data"]) and d[0]["requests"] == 3 and d, what="rollup")
    assert len(rows) == 1
    assert rows[0]["model"] == PAID_MODEL
    assert rows[0]["cost"] == -sum(d["amount"] for d in admin.debits(customer))
    day = rows[0]["day"]
    assert admin.ok("GET", path, **{"from": day, "to": day})["data"] == rows
    assert admin.ok("GET", path, **{"from": "2000-01-01", "to": "2000-01-31"})["data"] == []
    assert admin.call("GET", path, **{"from": "2026-02-01", "to": "2026-01-01"}).status_code == 400
    assert admin.call("GET", path, **{"from": "yesterday"}).status_code == 400


# -- signup ----------------------------------------------------------------------------------------


def test_one_call_signup_is_idempotent(admin: Admin, gateway: MeteredGateway) -> None:
    ext = f"signup-{gateway.backend.name}"
    body = {"externalId": ext, "displayName": "New User", "tier": "pro", "creditGrant": 2_000_000,
            "spendingCap": {"monthly": 10_000_000}, "rateLimit": {"rpm": 30}, "allowedModels": [],
            "idempotencyKey": f"portal-signup-{ext}"}
    first = admin.call("POST", "/users", body)
    assert first.status_code == 201, first.text
    doc = first.json()
    assert doc["customer"]["externalId"] == ext
    assert doc["key"]["key"].startswith("sk-")
    assert doc["creditGrant"]["amount"] == 2_000_000
    assert (doc["key"]["rateLimit"]["rpm"], doc["key"]["spendingCap"]["monthly"]) == (30, 10_000_000)
    replay = admin.call("POST", "/users", body)
    assert replay.status_code == 200
    assert replay.json()["key"]["keyId"] == doc["key"]["keyId"]
    assert "key" not in replay.json()["key"]  # the key only on first issue
    assert admin.balance(ext)["balance"] == 2_000_000  # granted once
    assert chat_status(gateway, doc["key"]["key"]) == 200
    stolen = admin.call("POST", "/users", {**body, "externalId": ext + "-other"})
    assert stolen.status_code == 409
    assert admin.call("POST", "/users", {**body, "creditGrant": 3_000_000}).status_code == 409
    assert admin.call("POST", "/users", {"externalId": ext, "tier": "pro"}).status_code == 400


# -- the operator's client -------------------------------------------------------------------------


def test_the_operators_client_round_trip(admin: Admin, gateway: MeteredGateway) -> None:
    ext = f"operator-{gateway.backend.name}"
    spec = CustomerKeySpec.model_validate({
        "instanceRef": {"name": "prod"}, "customer": {"externalId": ext, "displayName": "Op"}, "tier": "pro",
        "creditGrant": 3_000_000, "rateLimit": {"rpm": 60}, "spendingCap": {"daily": 1_000_000},
        "allowedModels": [PAID_MODEL], "expiresAt": "2031-01-01T00:00:00Z",
    })
    key = operator_generate_key()

    async def reconcile() -> tuple[dict[str, Any], dict[str, Any], tuple[int, int], dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as http:
            client = AdminClient(gateway.admin_url, ADMIN_TOKEN, http)
            await client.put_customer(ext, "Op")
            attrs = key_attributes(spec, "team", "ck")
            record = await client.create_key(ext, key_hash(key), display_prefix(key), attrs)
            again = await client.create_key(ext, key_hash(key), display_prefix(key), attrs)
            status_first, _ = await client.grant(ext, 3_000_000, "grant:team/ck:uid-1", "CustomerKey team/ck")
            status_replay, _ = await client.grant(ext, 3_000_000, "grant:team/ck:uid-1", "CustomerKey team/ck")
            assert attribute_patch(record, attrs) == {}, "the gateway's record must match what the operator sent"
            fetched = await client.get_key(str(record["keyId"]))
            assert fetched is not None
            assert await client.revoke("key_999999") is None
            return record, again, (status_first, status_replay), await client.balance(ext)

    record, again, statuses, balance = asyncio.run(reconcile())
    assert again["keyId"] == record["keyId"]
    assert record["label"] == "team/ck"
    assert statuses == (201, 200)
    assert balance["balance"] == 3_000_000
    assert key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert chat_status(gateway, key) == 200


# -- audit and the document ------------------------------------------------------------------------


def test_audit_query_and_export(admin: Admin) -> None:
    window = {"since": "2000-01-01T00:00:00Z", "until": "2000-01-02T00:00:00Z"}
    assert admin.ok("GET", "/audit", **window) == {"data": [], "nextCursor": None}
    export = admin.call("GET", "/audit/export", **window)
    assert (export.status_code, export.headers["Content-Type"], export.text) == (200, "application/x-ndjson", "")
    rsp = admin.call("GET", "/audit")
    assert rsp.status_code == 400
    assert error_of(rsp)["param"] == "since"


def test_served_openapi_document(admin: Admin, gateway: MeteredGateway) -> None:
    served = admin.ok("GET", "/openapi.json")
    # the compliance plane mounts its admin routes through the AdminExtension seam
    assert served == document(gateway.admin_url, [AdminExtension(COMPLIANCE_ROUTES, {}, COMPLIANCE_SCHEMAS)])


@pytest.mark.parametrize("path", ["/customers/{c}/keys", "/users", "/customers/{c}/credits"])
def test_bodies_must_be_json_objects(admin: Admin, customer: str, path: str) -> None:
    url = path.format(c=customer)
    for raw, code in ((b"[1, 2]", "invalid_value"), (b"{not json", "invalid_json")):
        rsp = admin.http.post(url, content=raw, headers={"Content-Type": "application/json"})
        assert rsp.status_code == 400, (url, raw)
        assert error_of(rsp)["code"] == code
