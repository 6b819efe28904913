"""``newapi operator``: Kopf settings, peering, and the run loop."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import socket
import sys
from typing import Any

import kopf

from . import constants as c
from .handlers import CHILD_RESOURCES, build_registry, selector_of
from .kube import ApiError, KubeClient
from .logs import setup_logging
from .runtime import DEFAULT_GATEWAY_IMAGE, OperatorConfig, Runtime

log = logging.getLogger("newapi_operator.controller.runner")

#: Watch timeouts: without them Kopf's watch streams are known to stall silently.
WATCH_SERVER_TIMEOUT = 300  # an integer: the API server rejects "300.0"
WATCH_CLIENT_TIMEOUT = 330.0
WATCH_CONNECT_TIMEOUT = 10.0


def identity() -> str:
    """This replica's name in the peering (``POD_ID`` in a pod, else host and pid)."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}-{os.getpid()}"


def make_settings(args: argparse.Namespace, ident: str) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = c.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.PREFIX, key="last-handled-configuration")
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
    settings.watching.connect_timeout = WATCH_CONNECT_TIMEOUT
    settings.networking.request_timeout = 60.0
    settings.networking.connect_timeout = 10.0
    settings.posting.level = logging.WARNING  # our own Events report transitions; Kopf posts only problems
    settings.posting.reporting_component = c.COMPONENT
    settings.posting.reporting_instance = ident[:128]
    settings.peering.stealth = True
    for group, version, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[selector_of(group, version, plural)] = c.MANAGED_SELECTOR  # type: ignore[index]
    if args.webhook_port is not None:
        tls = args.webhook_tls_dir
        settings.admission.server = kopf.WebhookServer(
            addr="0.0.0.0", port=args.webhook_port,
            certfile=os.path.join(tls, "tls.crt") if tls else None,
            pkeyfile=os.path.join(tls, "tls.key") if tls else None,
            insecure=not tls,
        )
    return settings


async def ensure_peering(client: KubeClient, name: str, namespaces: list[str]) -> None:
    """Create the peering object(s) when missing (Kopf only joins existing ones)."""
    objects: list[dict[str, Any]] = []
    if not namespaces:
        objects.append({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}})
    else:
        for ns in namespaces:
            if any(ch in ns for ch in "*?[!"):
                raise SystemExit(f"newapi operator: --namespace {ns!r} is a pattern; peering needs literal "
                                 "namespaces (or use --standalone, or serve all namespaces)")
            objects.append({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                            "metadata": {"name": name, "namespace": ns}})
    for obj in objects:
        meta = obj["metadata"]
        if await client.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"]) is None:
            try:
                await client.create(obj)
                log.info("created the peering object", extra={"kind": obj["kind"], "object": meta["name"]})
            except ApiError as err:
                if err.status != 409:
                    raise


async def main(args: argparse.Namespace) -> int:
    ident = identity()
    namespaces = [] if args.all_namespaces else list(args.namespace)
    config = OperatorConfig(
        namespaces=namespaces,
        gateway_image=args.gateway_image or DEFAULT_GATEWAY_IMAGE,
        operator_namespace=os.environ.get("POD_NAMESPACE"),
        admin_url=args.admin_url,
        usage_refresh_seconds=args.usage_refresh,
        identity=ident,
    )
    try:
        client = await KubeClient.connect(args.kubeconfig)
    except Exception as exc:
        print(f"newapi operator: cannot load Kubernetes credentials: {exc}", file=sys.stderr)
        return 1
    rt = Runtime(config, client)
    try:
        if not args.standalone:
            await ensure_peering(client, args.peering, namespaces)
    except ApiError as err:
        print(f"newapi operator: cannot prepare peering {args.peering!r}: {err}; install the Kopf peering CRDs "
              "(config/crd/kopf-peering.yaml) or run with --standalone", file=sys.stderr)
        await rt.close()
        return 1
    registry = build_registry(rt, webhook=args.webhook_port is not None)
    settings = make_settings(args, ident)
    liveness = None if args.liveness in ("", "none") else args.liveness
    priority = args.priority if args.priority is not None else random.randint(1, 2**31 - 1)
    log.info("starting", extra={"identity": ident, "peering": None if args.standalone else args.peering,
                                "priority": priority, "namespaces": namespaces or ["<all>"]})
    try:
        await kopf.operator(
            registry=registry,
            settings=settings,
            standalone=args.standalone,
            priority=priority,
            peering_name=None if args.standalone else args.peering,
            liveness_endpoint=liveness,
            clusterwide=not namespaces,
            namespaces=namespaces,
            identity=ident,  # type: ignore[arg-type]  # kopf's peering.Identity is a NewType of str
        )
    finally:
        if not rt.admin_http.is_closed:
            await rt.close()
    return 0


def run(args: argparse.Namespace) -> int:
    """The ``newapi operator`` entry point."""
    setup_logging(args.log_format, args.log_level)
    return asyncio.run(main(args))
