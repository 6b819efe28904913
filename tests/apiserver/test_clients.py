"""Unmodified clients against the cluster: kubernetes-asyncio's ``Watch()`` and typed API, via the kubeconfig."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException


@pytest.fixture
async def core(cluster: Any) -> AsyncIterator[client.CoreV1Api]:
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    async with api:
        yield client.CoreV1Api(api)


def configmap(name: str, **data: str) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)


async def test_watch_streams_typed_events(cluster: Any, core: client.CoreV1Api) -> None:
    ns = cluster.namespace
    listed = await core.list_namespaced_config_map(ns)
    seen: list[tuple[str, str, dict[str, str] | None]] = []

    async def consume() -> None:
        async with watch.Watch() as w:
            async for event in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=20,
                                        resource_version=listed.metadata.resource_version):
                obj = event["object"]
                assert isinstance(obj, client.V1ConfigMap)
                seen.append((event["type"], obj.metadata.name, obj.data))
                if len(seen) == 3:
                    return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    created = await core.create_namespaced_config_map(ns, configmap("kw", a="1"))
    assert created.metadata.uid
    await core.patch_namespaced_config_map("kw", ns, {"data": {"a": "2"}})
    await core.delete_namespaced_config_map("kw", ns)
    await asyncio.wait_for(task, 30)
    assert seen == [("ADDED", "kw", {"a": "1"}), ("MODIFIED", "kw", {"a": "2"}), ("DELETED", "kw", {"a": "2"})]


async def test_watch_raises_410_for_an_expired_resource_version(cluster: Any, core: client.CoreV1Api) -> None:
    ns = cluster.namespace
    start = (await core.list_namespaced_config_map(ns)).metadata.resource_version
    await core.create_namespaced_config_map(ns, configmap("churn", n="0"))
    for i in range(120):
        await core.patch_namespaced_config_map("churn", ns, {"data": {"n": str(i)}})
    if not cluster.emulated:
        start = "1"

    async def drain() -> None:
        async with watch.Watch() as w:
            async for _ in w.stream(core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=10):
                pass

    with pytest.raises(ApiException) as raised:
        await drain()
    assert raised.value.status == 410


async def test_typed_errors(cluster: Any, core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_config_map("absent", cluster.namespace)
    assert missing.value.status == 404
    await core.create_namespaced_config_map(cluster.namespace, configmap("twice"))
    with pytest.raises(ApiException) as exists:
        await core.create_namespaced_config_map(cluster.namespace, configmap("twice"))
    assert exists.value.status == 409


async def test_custom_objects_api(cluster: Any) -> None:
    api = await config.new_client_from_config(config_file=str(cluster.kubeconfig))
    async with api:
        custom = client.CustomObjectsApi(api)
        body = cluster.widget("typed", size=3)
        created = await custom.create_namespaced_custom_object("conformance.newapi.test", "v1", cluster.namespace,
                                                               "widgets", body)
        assert created["spec"]["color"] == "red"
        patched = await custom.patch_namespaced_custom_object_status(
            "conformance.newapi.test", "v1", cluster.namespace, "widgets", "typed", {"status": {"ok": True}},
            _content_type="application/merge-patch+json")
        assert patched["status"] == {"ok": True}
        listed = await custom.list_namespaced_custom_object("conformance.newapi.test", "v1", cluster.namespace,
                                                            "widgets", label_selector="")
        assert [i["metadata"]["name"] for i in listed["items"]] == ["typed"]
