"""Reconcile one NewAPIInstance: bind channels, render the routing table and children, apply, report.

Order: read the instance (fresh), validate its spec, decide the binding, render the routing
table, gather the upstream credentials, resolve the admin token (kept once generated), render
and apply every child (no write when a child already holds what we want), delete children no
longer wanted (a PDB at one replica, Ingresses without ``spec.ingress``), then write the status
(only when it changed) and post Events for condition transitions and (un)bound channels.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets as pysecrets
from typing import Any

from pydantic import ValidationError

from newapi_operator.api.compliance import check_instance, violations_from_validation_error
from newapi_operator.api.v1alpha1 import API_VERSION, NewAPIInstanceSpec

from . import constants as c
from .applier import ChildConflict
from .binding import ChannelInput, bind, selected
from .children import Owner, RenderInput, external_secret_decision, render_children
from .conditions import transitions
from .instance_status import InstanceOutcome, instance_status
from .kube import ApiError
from .routes import RoutingTableTooLarge, render_routes, upstream_credentials
from .runtime import Runtime

log = logging.getLogger("newapi_operator.controller.instance")

KIND = "NewAPIInstance"
#: Ready reasons that mean something is wrong (Warning Events).
ERROR_REASONS = frozenset({"InvalidSpec", "ApplyFailed", "RoutingTableTooLarge"})


def parse_instance_spec(raw: dict[str, Any]) -> tuple[NewAPIInstanceSpec | None, list[str]]:
    """The spec, or the problems (schema and single-object rules) that make it unusable."""
    try:
        spec = NewAPIInstanceSpec.model_validate(raw)
    except ValidationError as err:
        return None, [str(v) for v in violations_from_validation_error(err, prefix="spec")]
    problems = [str(v) for v in check_instance(spec)]
    return (spec, []) if not problems else (None, problems)


def _decode(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode().strip() or None
    except (binascii.Error, UnicodeDecodeError):
        return None


async def resolve_admin_token(rt: Runtime, namespace: str, name: str, spec: NewAPIInstanceSpec,
                              es_rendered: bool) -> str:
    """The admin token: from the ExternalSecret's target when it has one, else the one kept, else new."""
    if es_rendered:
        es = spec.catalyst_integration.external_secret
        target = await rt.client.get("v1", "Secret", namespace, es.target_secret_name)
        token = _decode(((target or {}).get("data") or {}).get(es.remote_ref.property))
        if token:
            return token
    current = await rt.client.get("v1", "Secret", namespace, c.admin_secret_name(name))
    token = _decode(((current or {}).get("data") or {}).get(c.ADMIN_TOKEN_KEY))
    return token or pysecrets.token_urlsafe(32)


async def reconcile_instance(rt: Runtime, namespace: str, name: str) -> None:
    """One reconcile; raises on transient errors (the work queue retries with backoff)."""
    body = await rt.client.get(API_VERSION, KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return  # gone or going: the garbage collector removes the children (owner references)
    meta = body["metadata"]
    generation = meta.get("generation")
    current = dict(body.get("status") or {})
    spec, problems = parse_instance_spec(dict(body.get("spec") or {}))
    replicas = int((body.get("spec") or {}).get("replicas") or 1)
    if spec is None:
        outcome = InstanceOutcome(generation, replicas, ready_replicas=int(current.get("readyReplicas") or 0),
                                  error_reason="InvalidSpec",
                                  error_message="; ".join(problems) + "; nothing was re-rendered until this is fixed")
        await _write_status(rt, body, outcome, current)
        return

    channels = [ChannelInput.from_body(b) for b in rt.channels_in(namespace)]
    refs = {ch.spec["secretRef"]["name"] for ch in selected(spec, channels)
            if isinstance(ch.spec.get("secretRef"), dict) and ch.spec["secretRef"].get("name")}
    secret_data = await rt.secrets.get_many(namespace, refs)
    binding = bind(name, spec, channels, secret_data)
    outcome = InstanceOutcome(generation, spec.replicas)
    try:
        routes = render_routes(name, spec, binding)
    except RoutingTableTooLarge as err:
        outcome.error_reason, outcome.error_message = "RoutingTableTooLarge", str(err)
        await _write_status(rt, body, outcome, current)
        return

    owner = Owner(name, namespace, meta["uid"])
    es_served = await rt.discovery.served("external-secrets.io", "v1beta1", "externalsecrets")
    probe = RenderInput(owner, spec, {}, {}, {}, "", rt.config.gateway_image, es_served, rt.config.operator_namespace)
    es_rendered, _ = external_secret_decision(probe)
    token = await resolve_admin_token(rt, namespace, name, spec, es_rendered)
    data, binary = routes.configmap_content()
    inp = RenderInput(owner, spec, data, binary, upstream_credentials(binding.bound), token,
                      spec.image or rt.config.gateway_image, es_served, rt.config.operator_namespace)
    rendered = render_children(inp)
    deployment: dict[str, Any] | None = None
    try:
        for obj in rendered.objects:
            result = await rt.applier.ensure(obj, owner_uid=owner.uid)
            if obj["kind"] == "Deployment":
                deployment = result.live
        for api_version, kind, child in rendered.absent:
            await rt.applier.ensure_absent(api_version, kind, namespace, child, owner.uid)
    except ChildConflict as err:
        outcome.error_reason, outcome.error_message = "ApplyFailed", str(err)
        await _write_status(rt, body, outcome, current)
        return
    except ApiError as err:
        if err.transient or err.conflict:
            raise
        outcome.error_reason, outcome.error_message = "ApplyFailed", f"the API server refused a child: {err}"
        await _write_status(rt, body, outcome, current)
        return

    outcome.ready_replicas = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    outcome.bound = binding.bound_names
    outcome.excluded = [e.as_status() for e in binding.excluded]
    outcome.binding_problems = list(binding.problems)
    outcome.tier_notes = list(routes.notes)
    outcome.routing_table_version = routes.version
    outcome.external_secret = rendered.external_secret
    await _write_status(rt, body, outcome, current)
    await _channel_events(rt, namespace, name, current, outcome)


async def _write_status(rt: Runtime, body: dict[str, Any], outcome: InstanceOutcome, current: dict[str, Any]) -> None:
    meta = body["metadata"]
    status = instance_status(outcome, current)
    if status == {k: current.get(k) for k in status} and set(current) <= set(status):
        return
    patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
    for key in current:
        if key not in status:
            patch["status"][key] = None
    result = await rt.client.merge_patch(API_VERSION, KIND, meta["namespace"], meta["name"], patch, "status")
    rt.note_status_write(KIND, meta["namespace"], meta["name"], result)
    log.info("instance status updated", extra={"namespace": meta["namespace"], "instance": meta["name"],
                                               "routingTableVersion": status.get("routingTableVersion"),
                                               "bound": len(status.get("boundChannels") or [])})
    for t in transitions(current.get("conditions"), status["conditions"]):
        bad = t.reason in ERROR_REASONS or (t.type == "Degraded" and t.status == "True")
        text = f"{t.type}={t.status} ({t.reason}): {t.message}"
        await rt.events.post(result, "Warning" if bad else "Normal", t.reason, text)


async def _channel_events(rt: Runtime, namespace: str, instance: str, current: dict[str, Any],
                          outcome: InstanceOutcome) -> None:
    """Events on Channels whose binding to this instance changed."""
    before_bound = set(current.get("boundChannels") or [])
    before_excluded = {e.get("name"): e.get("reason") for e in current.get("excludedChannels") or []}
    uids = {(b.get("metadata") or {}).get("name"): (b.get("metadata") or {}).get("uid")
            for b in rt.channels_in(namespace)}
    for ch in sorted(set(outcome.bound) - before_bound):
        await rt.events.normal(_channel_ref(namespace, ch, uids.get(ch)), "Bound",
                               f"bound to NewAPIInstance {instance}: in routing table {outcome.routing_table_version}")
    for entry in outcome.excluded:
        if before_excluded.get(entry["name"]) != entry["reason"]:
            await rt.events.warning(_channel_ref(namespace, entry["name"], uids.get(entry["name"])), "Excluded",
                                    f"excluded by NewAPIInstance {instance}: {entry['reason']}")


def _channel_ref(namespace: str, name: str, uid: str | None) -> dict[str, Any]:
    meta = {"name": name, "namespace": namespace}
    if uid:
        meta["uid"] = uid
    return {"apiVersion": API_VERSION, "kind": "Channel", "metadata": meta}
