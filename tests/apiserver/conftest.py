"""Fixtures for the local API server tests.

``cluster`` is what the conformance suite talks to: by default a fresh emulator
(:class:`LocalAPIServer`) per test; when ``NEWAPI_TEST_KUBECONFIG`` names a kubeconfig, that
cluster instead (the suite then holds the emulator to real behaviour). Either way the test gets
an HTTP client, a throwaway namespace (deleted afterwards) and the tiny ``Widget`` test CRD,
created over HTTP. Tests marked ``emulator_only`` check emulator features a real cluster
cannot show quickly (e.g. forced history compaction); they are skipped, with that reason, on a
real cluster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from newapi_operator.apiserver import LocalAPIServer

HERE = Path(__file__).resolve().parent
REAL_KUBECONFIG = os.environ.get("NEWAPI_TEST_KUBECONFIG")
#: The emulator's watch history in the conformance fixture (small, so 410 Gone is reachable).
HISTORY = 100

# ------------------------------------------------------------------------------------------------
# The Widget test CRD
# ------------------------------------------------------------------------------------------------

GROUP = "conformance.newapi.test"
VERSION = "v1"
CRD_NAME = f"widgets.{GROUP}"
API_VERSION = f"{GROUP}/{VERSION}"

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["size"],
    "properties": {
        "size": {"type": "integer", "minimum": 1, "maximum": 10},
        "limit": {"type": "integer"},
        "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
        "title": {"type": "string", "maxLength": 20, "pattern": "^[A-Za-z ]*$"},
        "tags": {"type": "array", "maxItems": 3, "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "ports": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
            },
        },
        "settings": {"type": "object", "additionalProperties": {"type": "string"}},
        "nested": {"type": "object", "default": {}, "properties": {"mode": {"type": "string", "default": "auto"}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
    "x-kubernetes-validations": [
        {"rule": "!has(self.limit) || self.limit >= self.size", "message": "limit must be at least size",
         "fieldPath": ".limit"},
    ],
}


def widget_crd() -> dict[str, Any]:
    """The Widget CRD manifest (apiextensions.k8s.io/v1), valid on a real cluster too."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": SPEC_SCHEMA,
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                }},
            }],
        },
    }


# ------------------------------------------------------------------------------------------------
# Talking to a cluster
# ------------------------------------------------------------------------------------------------


def client_settings(kubeconfig: str, scratch: Path) -> tuple[str, dict[str, Any]]:
    """Base URL and httpx options from a kubeconfig's current context (token or client certs)."""
    config = yaml.safe_load(Path(kubeconfig).read_text())
    ctx_name = config["current-context"]
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in config.get("users", []) if u["name"] == ctx.get("user")), {}) or {}

    def material(key: str) -> str | None:
        for source in (cluster, user):
            if source.get(f"{key}-data"):
                path = scratch / key
                path.write_bytes(base64.b64decode(source[f"{key}-data"]))
                return str(path)
            if source.get(key):
                return str(source[key])
        return None

    if user.get("exec") or user.get("auth-provider"):
        pytest.fail(f"{kubeconfig}: exec/auth-provider credentials are not supported; use a token or client certs")
    options: dict[str, Any] = {}
    ca = material("certificate-authority")
    options["verify"] = False if cluster.get("insecure-skip-tls-verify") else (ca or True)
    cert, key = material("client-certificate"), material("client-key")
    if cert and key:
        options["cert"] = (cert, key)
    if user.get("token"):
        options["headers"] = {"Authorization": f"Bearer {user['token']}"}
    return cluster["server"].rstrip("/"), options


@dataclass
class Cluster:
    """A cluster under test: HTTP client, throwaway namespace, helpers."""

    client: httpx.AsyncClient
    namespace: str
    kubeconfig: Path
    server: LocalAPIServer | None = None
    _cleanup: list[str] = field(default_factory=list)

    @property
    def emulated(self) -> bool:
        return self.server is not None

    # Paths -------------------------------------------------------------------------------------

    def path(self, plural: str, name: str | None = None, *, group: str = "", version: str = "v1",
             namespace: str | None = "", sub: str | None = None) -> str:
        """A resource path; ``namespace=""`` means the test namespace, None cluster-wide."""
        base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        ns = self.namespace if namespace == "" else namespace
        out = f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"
        if name:
            out += f"/{name}"
        if sub:
            out += f"/{sub}"
        return out

    def cm(self, name: str | None = None, **kw: Any) -> str:
        return self.path("configmaps", name, **kw)

    def widgets(self, name: str | None = None, **kw: Any) -> str:
        return self.path("widgets", name, group=GROUP, version=VERSION, **kw)

    # Objects -----------------------------------------------------------------------------------

    def widget(self, name: str, **spec: Any) -> dict[str, Any]:
        spec.setdefault("size", 1)
        return {"apiVersion": API_VERSION, "kind": "Widget", "metadata": {"name": name}, "spec": spec}

    @staticmethod
    def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = labels
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}

    async def create(self, path: str, obj: dict[str, Any], **params: Any) -> dict[str, Any]:
        response = await self.client.post(path, json=obj, params=params)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def get(self, path: str) -> dict[str, Any]:
        response = await self.client.get(path)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def patch(self, path: str, body: Any, kind: str = "merge", **params: Any) -> httpx.Response:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "apply": "application/apply-patch+yaml",
        }[kind]
        data = body if isinstance(body, str) else json.dumps(body)
        return await self.client.patch(path, content=data, params=params, headers={"Content-Type": content_type})

    async def gone(self, path: str, within: float = 60.0) -> None:
        """Wait until GET ``path`` answers 404 (deletions may be asynchronous)."""
        async def check() -> bool:
            return (await self.client.get(path)).status_code == 404
        await eventually(check, within, f"{path} to be gone")

    @staticmethod
    async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "condition") -> None:
        await eventually(check, within, what)

    def watch(self, path: str, **params: Any) -> WatchStream:
        return WatchStream(self.client, path, params)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30.0, what: str = "condition") -> None:
    """Poll ``check`` until true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


class WatchStream:
    """A watch running in the background; ``await stream.until(n)`` collects events."""

    def __init__(self, client: httpx.AsyncClient, path: str, params: dict[str, Any]) -> None:
        self.client, self.path, self.params = client, path, {"watch": "true", **params}
        self.events: list[dict[str, Any]] = []
        self.status: int | None = None
        self.ended = asyncio.Event()
        self._started = asyncio.Event()
        self._new = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            timeout = httpx.Timeout(30.0, read=None)
            async with self.client.stream("GET", self.path, params=self.params, timeout=timeout) as response:
                self.status = response.status_code
                self._started.set()
                async for line in response.aiter_lines():
                    if line.strip():
                        self.events.append(json.loads(line))
                        self._new.set()
        finally:
            self._started.set()
            self.ended.set()
            self._new.set()

    async def __aenter__(self) -> WatchStream:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._started.wait(), 30)
        assert self.status == 200, f"watch {self.path} answered {self.status}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task

    async def until(self, count: int, within: float = 30.0, types: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The first ``count`` events (only of ``types`` if given); fails on timeout or stream end."""
        deadline = time.monotonic() + within
        while True:
            seen = [e for e in self.events if not types or e["type"] in types]
            if len(seen) >= count:
                return seen[:count]
            if self.ended.is_set():
                pytest.fail(f"watch ended after {len(seen)} of {count} events: {self.events}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"timed out waiting for {count} events, got {self.events}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), remaining)


async def ensure_widget_crd(client: httpx.AsyncClient) -> None:
    crd_path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"
    response = await client.get(crd_path)
    if response.status_code == 404:
        created = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=widget_crd())
        assert created.status_code == 201, created.text
    elif response.json().get("spec", {}).get("versions") != widget_crd()["spec"]["versions"]:
        body = widget_crd()
        body["metadata"]["resourceVersion"] = response.json()["metadata"]["resourceVersion"]
        updated = await client.put(crd_path, json=body)
        assert updated.status_code == 200, updated.text

    async def served() -> bool:
        return (await client.get(f"/apis/{GROUP}/{VERSION}")).status_code == 200

    await eventually(served, 60, "the Widget CRD to be served")


@contextlib.asynccontextmanager
async def open_cluster(tmp_path: Path, **server_options: Any) -> AsyncIterator[Cluster]:
    server: LocalAPIServer | None = None
    if REAL_KUBECONFIG:
        base_url, options = client_settings(REAL_KUBECONFIG, tmp_path)
        kubeconfig = Path(REAL_KUBECONFIG)
    else:
        server = LocalAPIServer(history_size=HISTORY, **server_options)
        await server.start()
        base_url, options = server.url, {}
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0, **options) as client:
            await ensure_widget_crd(client)
            namespace = f"conformance-{uuid.uuid4().hex[:8]}"
            created = await client.post("/api/v1/namespaces", json={
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            assert created.status_code == 201, created.text
            try:
                yield Cluster(client=client, namespace=namespace, kubeconfig=kubeconfig, server=server)
            finally:
                await client.delete(f"/api/v1/namespaces/{namespace}")
    finally:
        if server is not None:
            errors = server.errors
            await server.stop()
            assert not errors, f"the local API server had internal errors: {errors!r}"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """The cluster under test (the emulator unless NEWAPI_TEST_KUBECONFIG is set)."""
    async with open_cluster(tmp_path) as c:
        yield c


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "emulator_only(reason): checks an emulator-only knob; skipped against a real cluster"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not REAL_KUBECONFIG:
        return
    for item in items:
        marker = item.get_closest_marker("emulator_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "emulator-specific"
            item.add_marker(pytest.mark.skip(reason=f"emulator only (NEWAPI_TEST_KUBECONFIG is set): {why}"))
