"""Conformance: finalizers and deletionTimestamp, garbage collection by owner, namespace termination."""

from __future__ import annotations

from typing import Any


def owned_by(owner: dict[str, Any], *, block: bool = False) -> list[dict[str, Any]]:
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": True}
    if block:
        ref["blockOwnerDeletion"] = True
    return [ref]


def child(cluster: Any, name: str, owner: dict[str, Any], *, block: bool = False) -> dict[str, Any]:
    body = cluster.configmap(name)
    body["metadata"]["ownerReferences"] = owned_by(owner, block=block)
    return body


async def test_delete_with_finalizers_sets_deletion_timestamp_until_released(cluster: Any) -> None:
    body = cluster.widget("fin")
    body["metadata"]["finalizers"] = ["conformance.newapi.test/hold"]
    created = await cluster.create(cluster.widgets(), body)
    rv = (await cluster.get(cluster.widgets()))["metadata"]["resourceVersion"]
    async with cluster.watch(cluster.widgets(), resourceVersion=rv) as stream:
        response = await cluster.client.delete(cluster.widgets("fin"))
        assert response.status_code in (200, 202), response.text
        assert response.json()["metadata"]["deletionTimestamp"]
        held = await cluster.get(cluster.widgets("fin"))
        assert held["metadata"]["deletionTimestamp"]
        assert held["metadata"]["generation"] == created["metadata"]["generation"] + 1
        again = await cluster.client.delete(cluster.widgets("fin"))  # deleting again changes nothing
        assert again.status_code == 200
        added = await cluster.patch(cluster.widgets("fin"), {"metadata": {"finalizers": [
            "conformance.newapi.test/hold", "conformance.newapi.test/new"]}})
        assert added.status_code == 422, added.text  # no new finalizers on an object being deleted
        released = await cluster.patch(cluster.widgets("fin"), {"metadata": {"finalizers": None}})
        assert released.status_code == 200, released.text
        events = await stream.until(2)
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    await cluster.gone(cluster.widgets("fin"))


async def test_dependents_are_collected_when_the_owner_is_gone(cluster: Any) -> None:
    owner = await cluster.create(cluster.widgets(), cluster.widget("owner"))
    await cluster.create(cluster.cm(), child(cluster, "owned", owner))
    await cluster.create(cluster.cm(), cluster.configmap("free"))
    response = await cluster.client.delete(cluster.widgets("owner"))
    assert response.status_code == 200
    await cluster.gone(cluster.cm("owned"))
    assert (await cluster.client.get(cluster.cm("free"))).status_code == 200


async def test_dependent_of_a_missing_owner_is_collected(cluster: Any) -> None:
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost",
                                                                   "uid": "2f1e3b8a-0000-4000-8000-000000000000"}}
    await cluster.create(cluster.cm(), child(cluster, "orphaned", ghost))
    await cluster.gone(cluster.cm("orphaned"))


async def test_dangling_owner_reference_is_dropped_when_another_owner_remains(cluster: Any) -> None:
    keep = await cluster.create(cluster.widgets(), cluster.widget("keep"))
    go = await cluster.create(cluster.widgets(), cluster.widget("go"))
    body = cluster.configmap("shared")
    body["metadata"]["ownerReferences"] = [
        {**owned_by(keep)[0], "controller": False}, {**owned_by(go)[0], "controller": False}]
    await cluster.create(cluster.cm(), body)
    await cluster.client.delete(cluster.widgets("go"))

    async def one_owner_left() -> bool:
        refs = (await cluster.get(cluster.cm("shared")))["metadata"].get("ownerReferences", [])
        return [r["name"] for r in refs] == ["keep"]

    await cluster.eventually(one_owner_left, 60, "the dangling owner reference to be removed")


async def test_foreground_deletion_waits_for_blocking_dependents(cluster: Any) -> None:
    owner = await cluster.create(cluster.widgets(), cluster.widget("fg"))
    blocker = child(cluster, "fg-child", owner, block=True)
    blocker["metadata"]["finalizers"] = ["conformance.newapi.test/hold"]
    await cluster.create(cluster.cm(), blocker)
    response = await cluster.client.request("DELETE", cluster.widgets("fg"), json={
        "apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"})
    assert response.status_code in (200, 202), response.text

    async def child_deleting() -> bool:
        return bool((await cluster.get(cluster.cm("fg-child")))["metadata"].get("deletionTimestamp"))

    await cluster.eventually(child_deleting, 60, "the blocking dependent to be deleted")
    waiting = await cluster.get(cluster.widgets("fg"))
    assert waiting["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"]
    await cluster.patch(cluster.cm("fg-child"), {"metadata": {"finalizers": None}})
    await cluster.gone(cluster.cm("fg-child"))
    await cluster.gone(cluster.widgets("fg"))


async def test_orphan_deletion_keeps_dependents_without_the_owner_reference(cluster: Any) -> None:
    owner = await cluster.create(cluster.widgets(), cluster.widget("orph"))
    await cluster.create(cluster.cm(), child(cluster, "orph-child", owner))
    response = await cluster.client.delete(cluster.widgets("orph"), params={"propagationPolicy": "Orphan"})
    assert response.status_code in (200, 202), response.text
    await cluster.gone(cluster.widgets("orph"))
    kept = await cluster.get(cluster.cm("orph-child"))
    assert not kept["metadata"].get("ownerReferences")


async def test_namespace_deletion_terminates_its_contents(cluster: Any) -> None:
    name = f"{cluster.namespace}-gone"
    await cluster.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    await cluster.create(cluster.cm(namespace=name), cluster.configmap("inside"))
    await cluster.create(cluster.widgets(namespace=name), cluster.widget("inside"))
    response = await cluster.client.delete(f"/api/v1/namespaces/{name}")
    assert response.status_code == 200, response.text
    assert response.json()["status"]["phase"] == "Terminating"
    refused = await cluster.client.post(cluster.cm(namespace=name), json=cluster.configmap("late"))
    if refused.status_code != 404:  # the namespace may already be gone
        assert refused.status_code == 403, refused.text
        assert refused.json()["reason"] == "Forbidden"
    await cluster.gone(f"/api/v1/namespaces/{name}", within=120)
    assert (await cluster.client.get(cluster.widgets("inside", namespace=name))).status_code == 404
