"""CustomerKey pure parts: key material, its Secret, attribute sync, usage snapshot, status."""

from __future__ import annotations

import base64
import hashlib

from newapi_operator.api.v1alpha1 import CustomerKeySpec
from newapi_operator.controller import constants as c
from newapi_operator.controller.conditions import Cond
from newapi_operator.controller.keys import (
    KeyMaterial,
    KeyOutcome,
    attribute_patch,
    display_prefix,
    generate_key,
    grant_idempotency_key,
    key_attributes,
    key_hash,
    key_secret,
    key_status,
    read_key_secret,
    usage_from_balance,
)

from .objects import customer_key


def test_keys_are_random_prefixed_and_long() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("sk-")
        raw = base64.urlsafe_b64decode(key[3:] + "=")
        assert len(raw) == 32
    key = next(iter(keys))
    assert key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert display_prefix(key) == key[:11]
    assert len(display_prefix(key)) == 11


def test_key_secret_round_trip_and_ownership() -> None:
    material = KeyMaterial("sk-abc", "key_123", 2, "key_old")
    secret = key_secret("k1", "ns", "uid-1", "gw", material)
    assert secret["metadata"]["name"] == "k1-key"
    assert secret["metadata"]["ownerReferences"][0] == {
        "apiVersion": "newapi.openova.io/v1alpha1", "kind": "CustomerKey", "name": "k1", "uid": "uid-1",
        "controller": True, "blockOwnerDeletion": True}
    assert secret["metadata"]["labels"][c.LABEL_CUSTOMER_KEY] == "k1"
    assert set(secret["data"]) == {"key", "keyId"}
    assert read_key_secret(secret) == material
    no_id = key_secret("k1", "ns", "uid-1", "gw", KeyMaterial("sk-abc", None, 0, None))
    assert set(no_id["data"]) == {"key"}
    assert read_key_secret(no_id) == KeyMaterial("sk-abc", None, 0, None)
    assert read_key_secret(None) is None
    assert read_key_secret({"data": {"key": base64.b64encode(b"not-a-key").decode()}}) is None


def test_grant_idempotency_key() -> None:
    assert grant_idempotency_key("ns", "k1", "uid-1") == "grant:ns/k1:uid-1"


def test_attributes_and_patch() -> None:
    spec = CustomerKeySpec.model_validate(customer_key("k1", allowedModels=["gpt-4o"])["spec"])
    attrs = key_attributes(spec, "ns", "k1")
    assert attrs == {"tier": "pro", "rateLimit": {"rpm": 60}, "spendingCap": {"daily": 1000000},
                     "allowedModels": ["gpt-4o"], "expiresAt": None, "label": "ns/k1"}
    record = {"keyId": "k", "tier": "pro", "rateLimit": {"rpm": 60, "tpm": None}, "spendingCap": {"daily": 1000000},
              "allowedModels": ["gpt-4o"], "expiresAt": None, "label": "ns/k1", "status": "active"}
    assert attribute_patch(record, attrs) == {}
    record["tier"] = "free"
    record["rateLimit"] = {}
    assert attribute_patch(record, attrs) == {"tier": "pro", "rateLimit": {"rpm": 60}}


def test_usage_written_with_a_new_timestamp_only_when_it_changed() -> None:
    usage = usage_from_balance({"balance": 5, "held": 0, "available": 5, "spentToday": 1, "spentThisMonth": 2,
                                "requestsToday": 3})
    outcome = KeyOutcome(1, True, "Active", "ok", "sk-abc", "key_1", 0, "k1-key",
                         Cond("CreditGranted", "True", "Granted", "5"), usage)
    first = key_status(outcome, None, now="2026-01-01T00:00:00Z")
    assert first["usage"] == {**usage, "updatedAt": "2026-01-01T00:00:00Z"}
    assert key_status(outcome, first, now="2026-01-02T00:00:00Z") == first
    changed = KeyOutcome(1, True, "Active", "ok", "sk-abc", "key_1", 0, "k1-key", None, {**usage, "balance": 4})
    second = key_status(changed, first, now="2026-01-02T00:00:00Z")
    assert second["usage"]["updatedAt"] == "2026-01-02T00:00:00Z"
    assert second["usage"]["balance"] == 4
    assert {x["type"] for x in second["conditions"]} == {"Ready", "CreditGranted"}  # kept from before


def test_not_ready_status_keeps_identity_fields() -> None:
    ok = key_status(KeyOutcome(1, True, "Active", "ok", "sk-abc", "key_1", 0, "k1-key"), None)
    down = key_status(KeyOutcome(1, False, "GatewayUnavailable", "down"), ok)
    assert down["keyId"] == "key_1"
    assert down["keyPrefix"] == "sk-abc"
    assert down["secretName"] == "k1-key"
    assert down["conditions"][0]["status"] == "False"
