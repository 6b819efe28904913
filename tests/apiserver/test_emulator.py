"""Emulator features beyond the conformance suite: kmock's DSL, the bounded log, bookmarks,
multi-version CRDs, shutdown, the threaded runner and flat per-request cost."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import kmock
import pytest

from newapi_operator.apiserver import LocalAPIServer, ThreadedAPIServer

CM = "/api/v1/namespaces/default/configmaps"


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


@pytest.fixture
async def server() -> AsyncIterator[LocalAPIServer]:
    async with LocalAPIServer(request_log_size=50, bookmark_interval=0.2) as running:
        yield running
        assert running.errors == []


@pytest.fixture
async def http(server: LocalAPIServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def test_kmock_reactions_take_precedence(server: LocalAPIServer, http: httpx.AsyncClient) -> None:
    server.emulator["post", kmock.resource("", "v1", "configmaps")] << 503
    assert (await http.post(CM, json=configmap("x"))).status_code == 503
    assert (await http.get(CM)).status_code == 200  # everything else is served by the emulator
    posts = list(server.emulator["post"])
    assert len(posts) == 1
    assert posts[0].name is None
    assert posts[0].resource == kmock.resource("", "v1", "configmaps")


async def test_request_log_is_bounded(server: LocalAPIServer, http: httpx.AsyncClient) -> None:
    for i in range(120):
        await http.get(f"{CM}/none-{i}")
    logged = list(server.emulator)
    assert len(logged) == 50
    assert logged[-1].name == "none-119"


async def test_bookmarks_and_initial_events_end(http: httpx.AsyncClient) -> None:
    await http.post(CM, json=configmap("pre"))
    params = {"watch": "1", "allowWatchBookmarks": "true", "sendInitialEvents": "true",
              "resourceVersionMatch": "NotOlderThan", "timeoutSeconds": "5", "fieldSelector": "metadata.name=pre"}
    events: list[dict[str, Any]] = []
    async with http.stream("GET", CM, params=params) as response:
        async for line in response.aiter_lines():
            events.append(httpx.Response(200, content=line).json())
            if len(events) == 3:
                break
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert events[2]["type"] == "BOOKMARK"  # periodic, every bookmark_interval
    assert events[2]["object"]["metadata"]["resourceVersion"].isdigit()


async def test_watches_end_when_the_server_stops() -> None:
    server = LocalAPIServer()
    await server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async def watch() -> None:
            async with client.stream("GET", CM, params={"watch": "true"}) as response:
                async for _ in response.aiter_lines():
                    pass

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await server.stop()
        await asyncio.wait_for(task, 10)
        assert time.monotonic() - started < 10


async def test_multi_version_crd_serves_each_version(server: LocalAPIServer, http: httpx.AsyncClient) -> None:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    server.add_crd({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.multi.newapi.test"},
        "spec": {"group": "multi.newapi.test", "scope": "Namespaced",
                 "names": {"plural": "things", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": schema},
                              {"name": "v2", "served": True, "storage": False, "schema": schema}]},
    })
    group = (await http.get("/apis/multi.newapi.test")).json()
    assert group["preferredVersion"]["version"] == "v2"
    thing = {"apiVersion": "multi.newapi.test/v2", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"a": 1}}
    assert (await http.post("/apis/multi.newapi.test/v2/namespaces/default/things", json=thing)).status_code == 201
    v1 = (await http.get("/apis/multi.newapi.test/v1/namespaces/default/things/t")).json()
    assert v1["apiVersion"] == "multi.newapi.test/v1"
    assert v1["spec"] == {"a": 1}


async def test_field_validation_ignore_gives_no_warning(server: LocalAPIServer, http: httpx.AsyncClient) -> None:
    server.add_crd({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "strict.fv.newapi.test"},
        "spec": {"group": "fv.newapi.test", "scope": "Namespaced", "names": {"plural": "strict", "kind": "Strict"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "properties": {"a": {"type": "string"}}}}}]},
    })
    body = {"apiVersion": "fv.newapi.test/v1", "kind": "Strict", "metadata": {"name": "s"}, "a": "x", "b": "y"}
    response = await http.post("/apis/fv.newapi.test/v1/namespaces/default/strict", json=body,
                               params={"fieldValidation": "Ignore"})
    assert response.status_code == 201
    assert "warning" not in response.headers
    assert "b" not in response.json()


async def test_protobuf_bodies_get_415_with_advice(http: httpx.AsyncClient) -> None:
    protobuf = {"Content-Type": "application/vnd.kubernetes.protobuf"}
    response = await http.post(CM, content=b"k8s\x00...", headers=protobuf)
    assert response.status_code == 415
    assert "--validate=false" in response.json()["message"]


def test_threaded_server_for_synchronous_callers() -> None:
    with ThreadedAPIServer() as server, httpx.Client(base_url=server.url) as client:
        url = server.url
        assert client.post(CM, json=configmap("sync")).status_code == 201
        assert client.get(f"{CM}/sync").json()["metadata"]["name"] == "sync"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}{CM}")


async def test_request_cost_stays_flat(http: httpx.AsyncClient) -> None:
    """kmock 0.8 re-scanned its whole request log per request; here cost must not grow with traffic."""
    await http.post(CM, json=configmap("bench", n="0"))

    async def median_get() -> float:
        samples = []
        for _ in range(100):
            start = time.perf_counter()
            (await http.get(f"{CM}/bench")).raise_for_status()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    before = min([await median_get() for _ in range(3)])
    for i in range(1000):
        await http.patch(f"{CM}/bench", json={"data": {"n": str(i)}},
                         headers={"Content-Type": "application/merge-patch+json"})
        await http.get(CM)
    after = min([await median_get() for _ in range(3)])
    assert after <= before * 1.5, f"GET latency grew from {before * 1000:.2f} ms to {after * 1000:.2f} ms"


async def test_bodies_up_to_three_mebibytes(http: httpx.AsyncClient) -> None:
    big = configmap("big", blob="x" * (2 * 1024 * 1024))
    assert (await http.post(CM, json=big)).status_code == 201
    huge = configmap("huge", blob="x" * (4 * 1024 * 1024))
    assert (await http.post(CM, json=huge)).status_code == 413


async def test_system_namespaces_cannot_be_deleted(http: httpx.AsyncClient) -> None:
    for name in ("default", "kube-system", "kube-public"):
        response = await http.delete(f"/api/v1/namespaces/{name}")
        assert response.status_code == 403, response.text
    assert (await http.get("/api/v1/namespaces/default")).json()["status"]["phase"] == "Active"


async def test_watch_without_initial_events_starts_now(http: httpx.AsyncClient) -> None:
    await http.post(CM, json=configmap("before"))
    params = {"watch": "true", "sendInitialEvents": "false", "timeoutSeconds": "5"}
    async with http.stream("GET", CM, params=params) as response:
        await http.post(CM, json=configmap("after"))
        async for line in response.aiter_lines():
            event = httpx.Response(200, content=line).json()
            assert event["object"]["metadata"]["name"] == "after"
            break
