"""A minimal Kopf operator run (unmodified, as a ``kopf run`` subprocess) against the API server.

It uses what the product's operator uses: create/update/resume handlers, a deletion handler
(Kopf's finalizer), an index, a timer, and children adopted with ``kopf.adopt`` (owner
references), created with kubernetes-asyncio.
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes_asyncio import client, config

WIDGETS = "widgets.conformance.newapi.test"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "conformance.newapi.test/kopf"
    settings.watching.server_timeout = 30
    settings.watching.client_timeout = 40
    settings.posting.level = 20  # INFO: handler outcomes become Events (POST /api/v1/.../events)
    await config.load_kube_config()


@kopf.index(WIDGETS)
def by_color(spec: kopf.Spec, name: str, **_: Any) -> dict[str, str]:
    return {str(spec.get("color", "red")): name}


@kopf.on.create(WIDGETS)
async def created(body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, status: kopf.Status,
                  patch: kopf.Patch, **_: Any) -> dict[str, Any]:
    child: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-child", "labels": {"widget": name}},
        "data": {"size": str(spec["size"])},
    }
    kopf.adopt(child, owner=body)
    async with client.ApiClient() as api:
        await client.CoreV1Api(api).create_namespaced_config_map(namespace, child)
    patch.status["creates"] = int(status.get("creates") or 0) + 1
    return {"child": child["metadata"]["name"]}


@kopf.on.update(WIDGETS, field="spec.size")
def resized(new: Any, patch: kopf.Patch, spec: kopf.Spec, by_color: kopf.Index[str, str], **_: Any) -> None:
    patch.status["size"] = new
    patch.status["sameColor"] = len(list(by_color.get(str(spec.get("color", "red")), [])))


@kopf.on.resume(WIDGETS)
def resumed(patch: kopf.Patch, **_: Any) -> None:
    patch.status["resumed"] = True


@kopf.on.delete(WIDGETS)
async def deleted(name: str, namespace: str, **_: Any) -> None:
    record = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-deleted"}}
    async with client.ApiClient() as api:
        await client.CoreV1Api(api).create_namespaced_config_map(namespace, record)


@kopf.timer(WIDGETS, interval=0.5, idle=0)
def tick(status: kopf.Status, patch: kopf.Patch, **_: Any) -> None:
    if not status.get("ticked"):
        patch.status["ticked"] = True
