"""Reconcile one CustomerKey with its instance's gateway through the admin API.

Every step is idempotent, so a crash anywhere and a replay never doubles anything:

1. the key Secret ``<name>-key`` is written *before* the gateway learns the key (a key is never
   registered that nobody holds); an existing Secret of the current ``spec.rotation`` is reused;
2. the customer is upserted (``PUT /customers/{externalId}``), the key registered by hash (the
   same hash again returns the same ``keyId``), and ``keyId`` added to the Secret;
3. ``creditGrant`` is granted with the idempotency key ``grant:<namespace>/<name>:<uid>``: a
   replay answers 200 with the same ledger entry, never a second grant;
4. after a rotation the previous key is revoked (idempotent), then forgotten;
5. tier, caps, limits, models, expiry and suspension are brought in line with the spec;
6. the status (Ready, keyPrefix, keyId, secretName, rotation, usage) is written when it changed.

Deletion (Kopf ``on.delete``, finalizer ``newapi.openova.io/finalizer``): the live key is revoked
first; then the object and its Secret go.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from typing import Any

from pydantic import ValidationError

from newapi_operator.api.compliance import check_customer_key, violations_from_validation_error
from newapi_operator.api.v1alpha1 import API_VERSION, CustomerKeySpec, NewAPIInstanceSpec

from . import constants as c
from .adminapi import AdminApiError, AdminClient
from .conditions import Cond, transitions
from .keys import (
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
    usage_changed,
    usage_from_balance,
)
from .runtime import Runtime
from .workqueue import Requeue

log = logging.getLogger("newapi_operator.controller.customerkey")

KIND = "CustomerKey"
#: How long an admin token read from ``<instance>-admin`` is reused.
TOKEN_TTL = 30.0
#: Not-Ready reasons the usage timer retries (the work queue gives up after its retries).
RETRIED_REASONS = frozenset({"GatewayUnavailable", "AdminTokenMissing"})


class NotReady(Exception):
    """The key cannot be reconciled yet (reason, message); its status says why."""

    def __init__(self, reason: str, message: str, retry_in: float | None = None) -> None:
        self.reason = reason
        self.message = message
        self.retry_in = retry_in
        super().__init__(f"{reason}: {message}")


async def admin_client(rt: Runtime, namespace: str, instance: str) -> AdminClient:
    """The admin API client of an instance's gateway (token from ``<instance>-admin``, cached briefly)."""
    key = (namespace, instance)
    hit = rt.admin_tokens.get(key)
    if hit is None or hit[1] < time.monotonic():
        secret = await rt.client.get("v1", "Secret", namespace, c.admin_secret_name(instance))
        raw = ((secret or {}).get("data") or {}).get(c.ADMIN_TOKEN_KEY)
        token = None
        if raw:
            try:
                token = base64.b64decode(raw, validate=True).decode().strip()
            except (binascii.Error, UnicodeDecodeError):
                token = None
        if not token:
            raise NotReady("AdminTokenMissing",
                           f"Secret {c.admin_secret_name(instance)} has no admin token yet; the instance's "
                           "reconcile creates it", retry_in=5.0)
        hit = (token, time.monotonic() + TOKEN_TTL)
        rt.admin_tokens[key] = hit
    return AdminClient(rt.config.admin_base_url(namespace, instance), hit[0], rt.admin_http)


def _parse(body: dict[str, Any]) -> tuple[CustomerKeySpec | None, str]:
    try:
        return CustomerKeySpec.model_validate(dict(body.get("spec") or {})), ""
    except ValidationError as err:
        return None, "; ".join(str(v) for v in violations_from_validation_error(err, prefix="spec"))


async def reconcile_key(rt: Runtime, namespace: str, name: str) -> None:
    body = await rt.client.get(API_VERSION, KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return  # the delete handler revokes
    meta = body["metadata"]
    current = dict(body.get("status") or {})
    try:
        outcome = await _register(rt, body)
    except NotReady as nr:
        outcome = KeyOutcome(meta.get("generation"), False, nr.reason, nr.message)
        await _write_status(rt, body, outcome, current)
        if nr.retry_in is not None:
            raise Requeue(nr.retry_in, nr.message) from None
        return
    except AdminApiError as err:
        if err.status == 401:
            rt.admin_tokens.pop((namespace, (body.get("spec") or {}).get("instanceRef", {}).get("name", "")), None)
        if err.transient or err.status == 401:
            outcome = KeyOutcome(meta.get("generation"), False, "GatewayUnavailable",
                                 f"the gateway's admin API did not answer as expected: {err}; retrying")
            await _write_status(rt, body, outcome, current)
            raise
        outcome = KeyOutcome(meta.get("generation"), False, "GatewayRejected", str(err))
        await _write_status(rt, body, outcome, current)
        return
    await _write_status(rt, body, outcome, current)


async def _instance_spec(rt: Runtime, namespace: str, name: str) -> NewAPIInstanceSpec:
    inst = rt.instance_snapshot(namespace, name)  # Kopf's index: current as of the last watch event
    if inst is None:
        raise NotReady("InstanceNotFound", f"spec.instanceRef: NewAPIInstance {name!r} does not exist in this "
                                           "namespace; create it or fix spec.instanceRef.name")
    try:
        return NewAPIInstanceSpec.model_validate(dict(inst.get("spec") or {}))
    except ValidationError:
        raise NotReady("InstanceInvalid", f"NewAPIInstance {name!r} has an invalid spec; see its status") from None


async def _register(rt: Runtime, body: dict[str, Any]) -> KeyOutcome:
    meta = body["metadata"]
    namespace, name, uid, generation = meta["namespace"], meta["name"], meta["uid"], meta.get("generation")
    spec, problem = _parse(body)
    if spec is None:
        raise NotReady("InvalidSpec", problem)
    instance_name = spec.instance_ref.name
    ispec = await _instance_spec(rt, namespace, instance_name)
    violations = check_customer_key(spec, ispec)
    if violations:
        raise NotReady("InvalidSpec", "; ".join(str(v) for v in violations))
    admin = await admin_client(rt, namespace, instance_name)

    # 1. key material: reuse the Secret of this rotation, else a new key written before registering.
    secret_name = c.key_secret_name(name)
    live_secret = await rt.client.get("v1", "Secret", namespace, secret_name)
    material = read_key_secret(live_secret)
    status_key_id = (body.get("status") or {}).get("keyId")
    if material is None or material.rotation != spec.rotation:
        previous = (material.key_id if material is not None else None) or status_key_id
        if material is not None and material.previous_key_id and material.previous_key_id != previous:
            await admin.revoke(material.previous_key_id)  # an older rotation never finished revoking
        material = KeyMaterial(generate_key(), None, spec.rotation, previous)
        live_secret = (await rt.applier.ensure(key_secret(name, namespace, uid, instance_name, material),
                                               live=live_secret)).live
        log.info("new key material", extra={"namespace": namespace, "customerkey": name, "rotation": spec.rotation})

    # 2. customer and key at the gateway (idempotent by external id and hash).
    attrs = key_attributes(spec, namespace, name)
    if material.key_id is None:
        await admin.put_customer(spec.customer.external_id, spec.customer.display_name)
        record = await admin.create_key(spec.customer.external_id, key_hash(material.key), display_prefix(material.key),
                                        attrs)
        material = KeyMaterial(material.key, str(record["keyId"]), material.rotation, material.previous_key_id)
        live_secret = (await rt.applier.ensure(key_secret(name, namespace, uid, instance_name, material),
                                               live=live_secret)).live
        log.info("key registered", extra={"namespace": namespace, "customerkey": name, "keyId": material.key_id})
    else:
        found = await admin.get_key(material.key_id)
        if found is None or found.get("status") == "revoked":
            # The gateway lost the key (new database) or it was revoked out of band: register the same key again.
            await admin.put_customer(spec.customer.external_id, spec.customer.display_name)
            record = await admin.create_key(spec.customer.external_id, key_hash(material.key),
                                            display_prefix(material.key), attrs)
            if str(record["keyId"]) != material.key_id or record.get("status") == "revoked":
                if record.get("status") == "revoked":
                    raise NotReady("KeyRevoked", "the gateway has this key revoked; bump spec.rotation to issue a "
                                                 "new one")
                material = KeyMaterial(material.key, str(record["keyId"]), material.rotation, material.previous_key_id)
                await rt.applier.ensure(key_secret(name, namespace, uid, instance_name, material))
        else:
            record = found
    key_id = material.key_id
    assert key_id is not None

    # 3. credit grant, once per object (the idempotency key makes replays harmless).
    grant_cond: Cond | None = None
    if spec.credit_grant:
        grant_cond = await _grant(admin, body, spec)

    # 4. revoke the key a rotation replaced.
    if material.previous_key_id and material.previous_key_id != material.key_id:
        await admin.revoke(material.previous_key_id)
        material = KeyMaterial(material.key, material.key_id, material.rotation, None)
        await rt.applier.ensure(key_secret(name, namespace, uid, instance_name, material), live=live_secret)
        log.info("previous key revoked", extra={"namespace": namespace, "customerkey": name})

    # 5. attributes and suspension.
    patch = attribute_patch(record, attrs)
    if patch:
        record = await admin.patch_key(key_id, patch)
    want = "suspended" if spec.suspended else "active"
    if record.get("status") != want:
        record = await (admin.suspend(key_id) if spec.suspended else admin.resume(key_id))

    usage = usage_from_balance(await admin.balance(spec.customer.external_id))
    if spec.suspended:
        reason, message = "Suspended", "the key is suspended (spec.suspended); requests with it are refused"
    else:
        reason, message = "Active", f"registered with the gateway of NewAPIInstance {instance_name}"
    return KeyOutcome(generation, not spec.suspended, reason, message, display_prefix(material.key), key_id,
                      spec.rotation, secret_name, grant_cond, usage)


async def _grant(admin: AdminClient, body: dict[str, Any], spec: CustomerKeySpec) -> Cond:
    meta = body["metadata"]
    current = next((x for x in (body.get("status") or {}).get("conditions") or []
                    if x.get("type") == "CreditGranted"), None)
    amount = int(spec.credit_grant or 0)
    text = f"{amount} micro-credits granted once to customer {spec.customer.external_id}"
    if current is not None and current.get("status") == "True" and current.get("message") == text:
        return Cond("CreditGranted", "True", "Granted", text)
    idem = grant_idempotency_key(meta["namespace"], meta["name"], meta["uid"])
    try:
        await admin.grant(spec.customer.external_id, amount, idem, f"CustomerKey {meta['namespace']}/{meta['name']}")
    except AdminApiError as err:
        if err.status != 409:
            raise
        return Cond("CreditGranted", "False", "GrantChanged",
                    "spec.creditGrant changed after the credit was granted; a grant happens once per key, "
                    "top up through the admin API instead")
    return Cond("CreditGranted", "True", "Granted", text)


async def _write_status(rt: Runtime, body: dict[str, Any], outcome: KeyOutcome, current: dict[str, Any]) -> None:
    meta = body["metadata"]
    status = key_status(outcome, current)
    if status == current:
        return
    patch: dict[str, Any] = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": dict(status)}
    for key in current:
        if key not in status:
            patch["status"][key] = None
    result = await rt.client.merge_patch(API_VERSION, KIND, meta["namespace"], meta["name"], patch, "status")
    rt.note_status_write(KIND, meta["namespace"], meta["name"], result)
    for t in transitions(current.get("conditions"), status["conditions"]):
        good = t.status == "True" or t.reason == "Suspended"
        await rt.events.post(result, "Normal" if good else "Warning", t.reason, f"{t.type}={t.status}: {t.message}")


async def revoke_on_delete(rt: Runtime, body: dict[str, Any]) -> str:
    """Revoke the live key before the object goes; returns what happened (for the log and an Event)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    instance = ((body.get("spec") or {}).get("instanceRef") or {}).get("name", "")
    secret = await rt.client.get("v1", "Secret", namespace, c.key_secret_name(name))
    material = read_key_secret(secret)
    ids = {i for i in ((body.get("status") or {}).get("keyId"),
                       material.key_id if material else None,
                       material.previous_key_id if material else None) if i}
    if not ids:
        return "no key was registered; nothing to revoke"
    inst = await rt.client.get(API_VERSION, "NewAPIInstance", namespace, instance)
    if inst is None or (inst.get("metadata") or {}).get("deletionTimestamp"):
        return f"NewAPIInstance {instance!r} is gone with its gateway; nothing to revoke"
    try:
        admin = await admin_client(rt, namespace, instance)
    except NotReady:
        return f"NewAPIInstance {instance!r} has no admin token; nothing to revoke"
    for key_id in sorted(ids):
        await admin.revoke(key_id)
    return f"revoked key(s) {', '.join(sorted(ids))} at the gateway"


async def refresh_usage(rt: Runtime, body: dict[str, Any]) -> bool:
    """Refresh ``status.usage`` from the gateway (rate-limited); True when the status was written."""
    status = dict(body.get("status") or {})
    if not status.get("keyId"):
        return False
    spec, _ = _parse(body)
    if spec is None:
        return False
    meta = body["metadata"]
    async with rt.usage_limiter:
        admin = await admin_client(rt, meta["namespace"], spec.instance_ref.name)
        fresh = usage_from_balance(await admin.balance(spec.customer.external_id))
    if not usage_changed(status.get("usage"), fresh):
        return False
    from .conditions import now_rfc3339

    patch = {"status": {"usage": {**fresh, "updatedAt": now_rfc3339()}}}
    result = await rt.client.merge_patch(API_VERSION, KIND, meta["namespace"], meta["name"], patch, "status")
    rt.note_status_write(KIND, meta["namespace"], meta["name"], result)
    return True
