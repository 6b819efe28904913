"""The Kopf registry: what the operator watches and how watch events become work.

- Indexes (filled before any handler runs): instances and channels by namespace, channels by
  the Secret they reference, CustomerKeys by instance.
- ``on.event`` handlers only enqueue keys on the work queues (no I/O, no writes from Kopf):
  an instance change -> that instance (and its CustomerKeys when the spec changed); a Channel
  change -> that Channel and the instances of its namespace; a change of a Secret a Channel
  references -> those Channels and instances (key rotation); a change or deletion of a child we
  own (label ``app.kubernetes.io/managed-by=newapi-operator``) -> its instance (drift repair).
  Events caused by our own writes are recognised by resourceVersion and skipped.
- CustomerKeys: ``on.delete`` (the only finalizer: revoke at the gateway first) and a timer that
  refreshes ``status.usage`` at a bounded rate.
- ``on.validate`` (only with ``--webhook-port``): the admission webhook (:mod:`.webhook`).
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Mapping
from typing import Any

import kopf

from newapi_operator.api.v1alpha1 import GROUP, VERSION

from . import constants as c
from .kube import ApiError
from .reconcile_channel import reconcile_channel
from .reconcile_customerkey import refresh_usage, revoke_on_delete
from .reconcile_instance import reconcile_instance
from .runtime import (
    INDEX_CHANNEL_SECRETS,
    INDEX_CHANNELS,
    INDEX_INSTANCES,
    INDEX_KEYS,
    Runtime,
)
from .webhook import needs_review, review
from .workqueue import WorkQueue

log = logging.getLogger("newapi_operator.controller.handlers")

#: Child kinds watched for drift (group/version, plural), filtered server-side by our label.
CHILD_RESOURCES: tuple[tuple[str, str, str], ...] = (
    ("", "v1", "serviceaccounts"),
    ("", "v1", "configmaps"),
    ("", "v1", "services"),
    ("apps", "v1", "deployments"),
    ("rbac.authorization.k8s.io", "v1", "roles"),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"),
    ("networking.k8s.io", "v1", "ingresses"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("external-secrets.io", "v1beta1", "externalsecrets"),
)
KIND_OF_PLURAL = {
    "serviceaccounts": ("v1", "ServiceAccount"), "configmaps": ("v1", "ConfigMap"), "services": ("v1", "Service"),
    "secrets": ("v1", "Secret"), "deployments": ("apps/v1", "Deployment"),
    "roles": ("rbac.authorization.k8s.io/v1", "Role"), "rolebindings": ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    "ingresses": ("networking.k8s.io/v1", "Ingress"), "networkpolicies": ("networking.k8s.io/v1", "NetworkPolicy"),
    "poddisruptionbudgets": ("policy/v1", "PodDisruptionBudget"),
    "externalsecrets": ("external-secrets.io/v1beta1", "ExternalSecret"),
}


def selector_of(group: str, version: str, plural: str) -> tuple[str, ...]:
    return ("v1", plural) if not group else (group, version, plural)


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an index keeps of an object: identity, labels, spec (a deep copy)."""
    meta = body.get("metadata") or {}
    return {
        "metadata": {k: copy.deepcopy(meta.get(k)) for k in ("name", "namespace", "uid", "generation",
                                                              "resourceVersion", "labels", "deletionTimestamp")},
        "spec": copy.deepcopy(dict(body.get("spec") or {})),
    }


def build_registry(rt: Runtime, *, webhook: bool = False) -> kopf.OperatorRegistry:
    """A fresh Kopf registry wired to ``rt``."""
    registry = kopf.OperatorRegistry()
    cfg = rt.config

    # -- lifecycle --------------------------------------------------------------------------------

    @kopf.on.login(registry=registry)
    async def login(**kw: Any) -> Any:
        return rt.client.connection_info()

    @kopf.on.startup(registry=registry)
    async def startup(**kw: Any) -> None:
        from .reconcile_customerkey import reconcile_key

        rt.bind_indexes(kw)
        rt.instance_queue = WorkQueue("instances", lambda k: reconcile_instance(rt, *k), workers=cfg.instance_workers)
        rt.channel_queue = WorkQueue("channels", lambda k: reconcile_channel(rt, *k), workers=cfg.channel_workers)
        rt.key_queue = WorkQueue("customerkeys", lambda k: reconcile_key(rt, *k), workers=cfg.key_workers)
        for queue in (rt.instance_queue, rt.channel_queue, rt.key_queue):
            queue.extra_stats = lambda: {"apiRequests": rt.client.requests, "apiWrites": rt.client.writes}
            queue.start()
        log.info("operator started", extra={"identity": cfg.identity,
                                            "namespaces": cfg.namespaces or ["<all>"]})

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**kw: Any) -> None:
        await rt.close()

    # -- indexes ----------------------------------------------------------------------------------

    @kopf.index(GROUP, VERSION, "newapiinstances", id=INDEX_INSTANCES, registry=registry)
    async def instances_by_namespace(**kw: Any) -> dict[str, Any]:
        namespace = kw["namespace"]
        body = kw["body"]
        return {namespace: snapshot(body)}

    @kopf.index(GROUP, VERSION, "channels", id=INDEX_CHANNELS, registry=registry)
    async def channels_by_namespace(**kw: Any) -> dict[str, Any]:
        namespace = kw["namespace"]
        body = kw["body"]
        return {namespace: snapshot(body)}

    @kopf.index(GROUP, VERSION, "channels", id=INDEX_CHANNEL_SECRETS, registry=registry)
    async def channels_by_secret(**kw: Any) -> dict[Any, str] | None:
        namespace = kw["namespace"]
        name = kw["name"]
        spec = kw["spec"]
        ref = spec.get("secretRef")
        if isinstance(ref, Mapping) and ref.get("name"):
            rt.secrets.remember(namespace, str(ref["name"]))
            return {(namespace, str(ref["name"])): name}
        return None

    @kopf.index(GROUP, VERSION, "customerkeys", id=INDEX_KEYS, registry=registry)
    async def customerkeys_by_instance(**kw: Any) -> dict[Any, str] | None:
        namespace = kw["namespace"]
        name = kw["name"]
        spec = kw["spec"]
        ref = (spec.get("instanceRef") or {}).get("name")
        return {(namespace, str(ref)): name} if ref else None

    # -- triggers ---------------------------------------------------------------------------------

    def enqueue_instances(namespace: str) -> None:
        assert rt.instance_queue is not None
        for inst in rt.instances_in(namespace):
            rt.instance_queue.add((namespace, inst))

    @kopf.on.event(GROUP, VERSION, "newapiinstances", registry=registry)
    async def instance_event(**kw: Any) -> None:
        event = kw["event"]
        namespace = kw["namespace"]
        name = kw["name"]
        meta = kw["meta"]
        assert rt.instance_queue is not None
        assert rt.key_queue is not None
        if event.get("type") == "DELETED":
            rt.instance_generations.pop((namespace, name), None)
            return
        if rt.is_own_status_write("NewAPIInstance", namespace, name, meta.get("resourceVersion")):
            return
        rt.instance_queue.add((namespace, name))
        generation = meta.get("generation")
        if rt.instance_generations.get((namespace, name), -1) != generation:
            rt.instance_generations[(namespace, name)] = generation
            if event.get("type") is not None:  # not the initial listing: keys get their own initial events
                for key in rt.keys_of_instance(namespace, name):
                    rt.key_queue.add((namespace, key))

    @kopf.on.event(GROUP, VERSION, "channels", registry=registry)
    async def channel_event(**kw: Any) -> None:
        event = kw["event"]
        namespace = kw["namespace"]
        name = kw["name"]
        meta = kw["meta"]
        assert rt.channel_queue is not None
        if rt.is_own_status_write("Channel", namespace, name, meta.get("resourceVersion")):
            return
        if event.get("type") != "DELETED":
            rt.channel_queue.add((namespace, name))
        enqueue_instances(namespace)

    @kopf.on.event("v1", "secrets", registry=registry)
    async def secret_event(**kw: Any) -> None:
        event = kw["event"]
        namespace = kw["namespace"]
        name = kw["name"]
        meta = kw["meta"]
        labels = kw["labels"]
        assert rt.channel_queue is not None
        raw = event.get("object") or {}
        deleted = event.get("type") == "DELETED"
        if rt.secrets.observe(namespace, name, None if deleted else dict(raw.get("data") or {})):
            channels = rt.channels_of_secret(namespace, name)
            for ch in channels:
                rt.channel_queue.add((namespace, ch))
            if channels:
                enqueue_instances(namespace)
        if labels.get(c.LABEL_MANAGED_BY) == c.MANAGED_BY:
            child_changed("secrets", event, namespace, name, meta, labels)

    def child_changed(plural: str, event: Mapping[str, Any], namespace: str, name: str, meta: Any,
                      labels: Any) -> None:
        assert rt.instance_queue is not None
        assert rt.key_queue is not None
        api_version, kind = KIND_OF_PLURAL[plural]
        if event.get("type") != "DELETED" and rt.applier.own_version(
                (api_version, kind, namespace, name), meta.get("resourceVersion")):
            return
        if labels.get(c.LABEL_COMPONENT) == "customer-key" and labels.get(c.LABEL_CUSTOMER_KEY):
            rt.key_queue.add((namespace, str(labels[c.LABEL_CUSTOMER_KEY])))
        elif labels.get(c.LABEL_INSTANCE):
            rt.instance_queue.add((namespace, str(labels[c.LABEL_INSTANCE])))
            if plural == "secrets" and name == c.admin_secret_name(str(labels[c.LABEL_INSTANCE])):
                rt.admin_tokens.pop((namespace, str(labels[c.LABEL_INSTANCE])), None)

    for group, version, plural in CHILD_RESOURCES:
        def make(plural: str) -> Any:
            async def child_event(**kw: Any) -> None:
                event = kw["event"]
                namespace = kw["namespace"]
                name = kw["name"]
                meta = kw["meta"]
                labels = kw["labels"]
                child_changed(plural, event, namespace, name, meta, labels)
            return child_event

        kopf.on.event(*selector_of(group, version, plural), labels={c.LABEL_MANAGED_BY: c.MANAGED_BY},
                      id=f"drift-{plural}", registry=registry)(make(plural))

    @kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions", registry=registry,
                   field="metadata.name", value="externalsecrets.external-secrets.io")
    async def external_secrets_crd(**kw: Any) -> None:
        """ESO installed or removed: re-render every instance (the ExternalSecret child appears or goes)."""
        assert rt.instance_queue is not None
        rt.discovery.invalidate()
        for namespace in list(rt.indexes.get(INDEX_INSTANCES) or []):
            enqueue_instances(namespace)

    # -- CustomerKeys -----------------------------------------------------------------------------

    @kopf.on.event(GROUP, VERSION, "customerkeys", registry=registry)
    async def customerkey_event(**kw: Any) -> None:
        event = kw["event"]
        namespace = kw["namespace"]
        name = kw["name"]
        meta = kw["meta"]
        assert rt.key_queue is not None
        if event.get("type") == "DELETED" or meta.get("deletionTimestamp"):
            rt.key_generations.pop((namespace, name), None)
            return
        if rt.is_own_status_write("CustomerKey", namespace, name, meta.get("resourceVersion")):
            return
        generation = meta.get("generation")
        if event.get("type") == "MODIFIED" and rt.key_generations.get((namespace, name)) == generation:
            return  # metadata only (Kopf's finalizer and annotations, labels): nothing for the gateway
        rt.key_generations[(namespace, name)] = generation
        rt.key_queue.add((namespace, name))

    @kopf.on.delete(GROUP, VERSION, "customerkeys", registry=registry, backoff=2.0)
    async def customerkey_deleted(**kw: Any) -> None:
        body = kw["body"]
        namespace = kw["namespace"]
        name = kw["name"]
        from .adminapi import AdminApiError

        raw = copy.deepcopy(dict(body))
        try:
            what = await revoke_on_delete(rt, raw)
        except AdminApiError as err:
            raise kopf.TemporaryError(f"could not revoke the key yet: {err}", delay=5.0) from err
        except ApiError as err:
            raise kopf.TemporaryError(f"could not read what to revoke: {err}", delay=5.0) from err
        log.info("customer key deleted", extra={"namespace": namespace, "customerkey": name, "result": what})
        await rt.events.normal(raw, "Revoked", what)

    @kopf.timer(GROUP, VERSION, "customerkeys", registry=registry, interval=cfg.usage_refresh_seconds,
                initial_delay=lambda **_: random.uniform(0.2, 1.0) * cfg.usage_refresh_seconds,
                idle=None, id="usage")
    async def customerkey_usage(**kw: Any) -> None:
        """Refresh the usage snapshot; a key left not Ready by a gateway outage is retried from here."""
        body = kw["body"]
        from .adminapi import AdminApiError
        from .reconcile_customerkey import RETRIED_REASONS, NotReady

        assert rt.key_queue is not None
        ready = next((c for c in (body.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
        if ready is not None and ready.get("reason") in RETRIED_REASONS:
            rt.key_queue.add((kw["namespace"], kw["name"]))
            return
        try:
            await refresh_usage(rt, copy.deepcopy(dict(body)))
        except (AdminApiError, NotReady, ApiError) as err:
            log.info("usage refresh skipped", extra={"error": str(err)})

    # -- admission webhook ------------------------------------------------------------------------

    if webhook:
        def make_validator(kind: str) -> Any:
            async def validate(**kw: Any) -> None:
                body = kw["body"]
                namespace = kw["namespace"]
                warnings = kw["warnings"]
                old = kw.get("old")
                if not needs_review(None if old is None else dict(old), dict(body)):
                    return
                ns = namespace or ""
                errors, warns = review(
                    kind, copy.deepcopy(dict(body)),
                    instances=list(rt._store(INDEX_INSTANCES, ns)),
                    channels=list(rt._store(INDEX_CHANNELS, ns)),
                )
                warnings.extend(warns)
                if errors:
                    raise kopf.AdmissionError("; ".join(errors), code=422)
            return validate

        for kind, plural in (("NewAPIInstance", "newapiinstances"), ("Channel", "channels"),
                             ("CustomerKey", "customerkeys")):
            kopf.on.validate(GROUP, VERSION, plural, id=f"validate-{plural}", registry=registry,
                             operations=["CREATE", "UPDATE"])(make_validator(kind))

    return registry
