"""A small async client of the local API server for ``newapi dev`` (httpx, plain HTTP, no credentials).

It finds resources through discovery (so any kind the server serves can be applied), applies
objects with server-side apply (field manager ``newapi-dev``, forced: ``newapi dev`` owns what it
applies), reads objects and writes status subresources with merge patches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

FIELD_MANAGER = "newapi-dev"

Obj = dict[str, Any]


class KubeError(Exception):
    """A non-2xx answer of the API server; the message carries its Status message."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Resource:
    """Where a kind lives: its collection path prefix and whether it is namespaced."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            base += f"/namespaces/{namespace or 'default'}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


def _message(rsp: httpx.Response) -> str:
    try:
        doc = rsp.json()
    except ValueError:
        return rsp.text[:300] or rsp.reason_phrase
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return rsp.reason_phrase


class DevKube:
    """The local API server at ``url``."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.http = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=timeout, trust_env=False)
        self._resources: dict[tuple[str, str], Resource] = {}

    async def close(self) -> None:
        await self.http.aclose()

    async def resource(self, api_version: str, kind: str) -> Resource:
        """The resource serving ``api_version``/``kind`` (discovery, cached)."""
        key = (api_version, kind)
        if key not in self._resources:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            rsp = await self.http.get(path)
            if rsp.status_code == 404:
                raise KubeError(404, f"the API server does not serve {api_version} (kind {kind})")
            if rsp.status_code >= 400:
                raise KubeError(rsp.status_code, f"discovery of {api_version}: {_message(rsp)}")
            for res in rsp.json().get("resources") or []:
                if "/" not in res["name"]:
                    self._resources[(api_version, res["kind"])] = Resource(
                        api_version, res["kind"], res["name"], bool(res.get("namespaced")))
            if key not in self._resources:
                raise KubeError(404, f"the API server serves no kind {kind} in {api_version}")
        return self._resources[key]

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        res = await self.resource(api_version, kind)
        rsp = await self.http.get(res.path(namespace, name))
        if rsp.status_code == 404:
            return None
        if rsp.status_code >= 400:
            raise KubeError(rsp.status_code, f"GET {kind} {namespace}/{name}: {_message(rsp)}")
        doc: Obj = rsp.json()
        return doc

    async def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        """Every object of a kind (in ``namespace``, or in all namespaces)."""
        res = await self.resource(api_version, kind)
        path = res.path(namespace) if namespace or not res.namespaced else res.path().replace("/namespaces/default", "")
        rsp = await self.http.get(path)
        if rsp.status_code >= 400:
            raise KubeError(rsp.status_code, f"LIST {kind}: {_message(rsp)}")
        items: list[Obj] = rsp.json().get("items") or []
        return items

    async def apply(self, obj: Obj) -> Obj:
        """Server-side apply ``obj`` (create or update; a repeated apply changes nothing)."""
        res = await self.resource(str(obj["apiVersion"]), str(obj["kind"]))
        meta = obj["metadata"]
        rsp = await self.http.patch(
            res.path(meta.get("namespace"), meta["name"]),
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(obj).encode(),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        if rsp.status_code >= 400:
            where = f"{meta.get('namespace')}/{meta['name']}" if res.namespaced else meta["name"]
            raise KubeError(rsp.status_code, f"{obj['kind']} {where}: {_message(rsp)}")
        doc: Obj = rsp.json()
        return doc

    async def patch_status(self, api_version: str, kind: str, namespace: str, name: str, status: Obj) -> Obj | None:
        """Merge-patch the status subresource (None when the object is gone)."""
        res = await self.resource(api_version, kind)
        rsp = await self.http.patch(res.path(namespace, name, "status"),
                                    content=json.dumps({"status": status}).encode(),
                                    headers={"Content-Type": "application/merge-patch+json"})
        if rsp.status_code == 404:
            return None
        if rsp.status_code >= 400:
            raise KubeError(rsp.status_code, f"status of {kind} {namespace}/{name}: {_message(rsp)}")
        doc: Obj = rsp.json()
        return doc
