"""CustomerKey pure parts: key material, its Secret, what the gateway should hold, the status.

A key is ``sk-`` + ``secrets.token_urlsafe(32)`` (32 random bytes). Only the Secret
``<name>-key`` holds it (keys ``key`` and ``keyId``); the gateway gets its SHA-256 hex and a
display prefix. The Secret's annotation ``newapi.openova.io/rotation`` says which
``spec.rotation`` the key belongs to; ``newapi.openova.io/previous-key-id`` names the key a
rotation replaces until that one is revoked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from newapi_operator.api.v1alpha1 import API_VERSION, CustomerKeySpec

from . import constants as c
from .conditions import Cond, merge_conditions

KEY_PREFIX = "sk-"
#: Characters of the key shown as ``keyPrefix`` (``sk-`` and 8 more).
DISPLAY_PREFIX_LEN = 11


def generate_key() -> str:
    """A new customer key: ``sk-`` and 43 URL-safe characters (32 random bytes)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """SHA-256 hex of the whole key string (what the gateway stores)."""
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_PREFIX_LEN]


def grant_idempotency_key(namespace: str, name: str, uid: str) -> str:
    """The credit grant's idempotency key: one grant per CustomerKey object, whatever happens."""
    return f"grant:{namespace}/{name}:{uid}"


@dataclass(frozen=True)
class KeyMaterial:
    """What the key Secret holds."""

    key: str
    key_id: str | None
    rotation: int
    previous_key_id: str | None


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _unb64(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def read_key_secret(secret: Mapping[str, Any] | None) -> KeyMaterial | None:
    """The key material of a live Secret, None when absent or unusable."""
    if secret is None:
        return None
    data = secret.get("data") or {}
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    key = _unb64(data.get(c.KEY_SECRET_KEY))
    if not key or not key.startswith(KEY_PREFIX):
        return None
    try:
        rotation = int(annotations.get(c.ANNOTATION_ROTATION, "-1"))
    except ValueError:
        rotation = -1
    return KeyMaterial(key, _unb64(data.get(c.KEY_SECRET_KEY_ID)) or None, rotation,
                       annotations.get(c.ANNOTATION_PREVIOUS_KEY_ID) or None)


def key_secret(name: str, namespace: str, uid: str, instance: str, material: KeyMaterial) -> dict[str, Any]:
    """The Secret ``<name>-key`` (owned by the CustomerKey; the portal reads ``key``)."""
    data = {c.KEY_SECRET_KEY: _b64(material.key)}
    if material.key_id:
        data[c.KEY_SECRET_KEY_ID] = _b64(material.key_id)
    annotations = {c.ANNOTATION_ROTATION: str(material.rotation)}
    if material.previous_key_id:
        annotations[c.ANNOTATION_PREVIOUS_KEY_ID] = material.previous_key_id
    labels = c.labels(instance, "customer-key")
    labels[c.LABEL_CUSTOMER_KEY] = name
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": c.key_secret_name(name),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": "CustomerKey", "name": name, "uid": uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "type": "Opaque",
        "data": data,
    }


def key_attributes(spec: CustomerKeySpec, namespace: str, name: str) -> dict[str, Any]:
    """The key's attributes as the admin API takes them (``POST .../keys``, ``PATCH /keys/{id}``)."""
    return {
        "tier": spec.tier,
        "rateLimit": spec.rate_limit.wire(),
        "spendingCap": spec.spending_cap.wire(),
        "allowedModels": list(spec.allowed_models),
        "expiresAt": spec.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if spec.expires_at else None,
        "label": f"{namespace}/{name}",
    }


def _norm(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items() if v is not None}
    return value


def attribute_patch(record: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``desired`` the gateway's key record does not hold yet (empty = in sync)."""
    out: dict[str, Any] = {}
    for field, want in desired.items():
        have = record.get(field)
        if (field == "expiresAt" and isinstance(have, str) and isinstance(want, str)
                and have.replace("+00:00", "Z").split(".")[0].rstrip("Z") == want.rstrip("Z")):
            continue
        if _norm(have if have is not None else _empty(want)) != _norm(want if want is not None else _empty(have)):
            out[field] = want
    return out


def _empty(other: Any) -> Any:
    if isinstance(other, dict):
        return {}
    if isinstance(other, list):
        return []
    return None


def usage_from_balance(balance: Mapping[str, Any]) -> dict[str, Any]:
    """``status.usage`` fields (without ``updatedAt``) from ``GET /customers/{id}/balance``."""
    return {
        "balance": balance.get("balance"),
        "spentToday": balance.get("spentToday"),
        "spentThisMonth": balance.get("spentThisMonth"),
        "requestsToday": balance.get("requestsToday"),
    }


def usage_changed(current: Mapping[str, Any] | None, fresh: Mapping[str, Any]) -> bool:
    current = current or {}
    return any(current.get(k) != v for k, v in fresh.items())


@dataclass
class KeyOutcome:
    """What one CustomerKey reconcile found."""

    generation: int | None
    ready: bool
    reason: str
    message: str
    key_prefix: str | None = None
    key_id: str | None = None
    rotation: int | None = None
    secret_name: str | None = None
    grant: Cond | None = None
    usage: dict[str, Any] | None = None


def key_status(o: KeyOutcome, current: Mapping[str, Any] | None, now: str | None = None) -> dict[str, Any]:
    """The ``status`` document; identity fields and usage are kept from ``current`` when not known."""
    current = dict(current or {})
    conds = [Cond("Ready", "True" if o.ready else "False", o.reason, o.message)]
    if o.grant is not None:
        conds.append(o.grant)
    elif (old := next((x for x in current.get("conditions") or [] if x.get("type") == "CreditGranted"), None)):
        conds.append(Cond("CreditGranted", old["status"], old["reason"], old.get("message", "")))
    status: dict[str, Any] = {
        "conditions": merge_conditions(current.get("conditions"), conds, o.generation, now),
        "observedGeneration": o.generation,
    }
    for field, value in (("secretName", o.secret_name), ("keyPrefix", o.key_prefix), ("keyId", o.key_id),
                         ("rotation", o.rotation)):
        status[field] = value if value is not None else current.get(field)
    if o.usage is not None:
        old_usage = current.get("usage") or {}
        if usage_changed(old_usage, o.usage):
            status["usage"] = {**o.usage, "updatedAt": now or _now()}
        else:
            status["usage"] = old_usage
    elif "usage" in current:
        status["usage"] = current["usage"]
    return {k: v for k, v in status.items() if v is not None}


def _now() -> str:
    from .conditions import now_rfc3339

    return now_rfc3339()
