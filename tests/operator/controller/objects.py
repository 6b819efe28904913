"""Builders of NewAPIInstance, Channel, Secret and CustomerKey documents for the operator tests."""

from __future__ import annotations

import base64
import copy
from typing import Any

API = "newapi.openova.io/v1alpha1"

#: The seed's three tiers (free: in-cluster only; pro; enterprise: open budget).
TIERS: dict[str, Any] = {
    "free": {"free": True, "dailyRequestQuota": 10, "modelDowngrades": {"gpt-4": "qwen3-32b"}},
    "pro": {"dailyRequestQuota": 1000},
    "enterprise": {"unlimitedCredit": True},
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and value and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: The gateway image of test instances: on a real cluster its pods never become ready, so the
#: Deployment's status (and the instance's readyReplicas) stays still while tests count writes.
TEST_IMAGE = "registry.invalid/newapi-gateway:test"


def instance(name: str = "gw", namespace: str = "default", labels: dict[str, str] | None = None,
             **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"tiers": copy.deepcopy(TIERS), "image": TEST_IMAGE}
    body = _merge(body, spec)
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": API, "kind": "NewAPIInstance", "metadata": meta, "spec": body}


def vllm(name: str, namespace: str = "default", labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    body = _merge({
        "type": "vllm",
        "endpoint": "http://vllm.models.svc:8000/v1",
        "models": ["qwen3-32b"],
        "modelMapping": {"qwen3-32b": "Qwen/Qwen3-32B"},
        "priority": 10,
        "pricing": {"inputPerMillion": 100000, "outputPerMillion": 300000},
        "attestation": {"kind": "in-cluster", "owner": "platform team (own GPUs)"},
    }, spec)
    return _channel(name, namespace, labels, body)


def openai(name: str, secret: str = "openai-key", namespace: str = "default", labels: dict[str, str] | None = None,
           **spec: Any) -> dict[str, Any]:
    body = _merge({
        "type": "openai-compatible",
        "endpoint": "https://api.openai.com/v1",
        "secretRef": {"name": secret, "key": "api-key"},
        "models": ["gpt-4o-mini"],
        "tiers": ["pro", "enterprise"],
        "pricing": {"inputPerMillion": 150000, "outputPerMillion": 600000},
        "aupProvider": "openai",
        "attestation": {"kind": "commercial-contract", "accountId": "org-123", "contractRef": "contracts/openai-2026"},
    }, spec)
    return _channel(name, namespace, labels, body)


def byok(name: str, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body = _merge({
        "type": "byok-passthrough",
        "models": ["gpt-4o"],
        "allowedProviders": ["openai", "anthropic"],
        "tiers": ["enterprise"],
        "attestation": {"kind": "byok"},
    }, spec)
    return _channel(name, namespace, None, body)


def _channel(name: str, namespace: str, labels: dict[str, str] | None, spec: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": API, "kind": "Channel", "metadata": meta, "spec": spec}


def secret(name: str, namespace: str = "default", **values: str) -> dict[str, Any]:
    data = {k.replace("_", "-"): base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "data": data}


def customer_key(name: str, instance_name: str = "gw", namespace: str = "default", **spec: Any) -> dict[str, Any]:
    body = _merge({
        "instanceRef": {"name": instance_name},
        "customer": {"externalId": f"cust-{name}", "displayName": f"Customer {name}"},
        "tier": "pro",
        "creditGrant": 5_000_000,
        "spendingCap": {"daily": 1_000_000},
        "rateLimit": {"rpm": 60},
    }, spec)
    return {"apiVersion": API, "kind": "CustomerKey", "metadata": {"name": name, "namespace": namespace},
            "spec": body}


def with_meta(obj: dict[str, Any], **meta: Any) -> dict[str, Any]:
    """A copy with metadata fields set (uid, generation, ... as a server would)."""
    out = copy.deepcopy(obj)
    out["metadata"].update(meta)
    return out
