"""The local API server's objects saved and restored across ``newapi dev`` runs (real servers, real HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from newapi_operator.apiserver import LocalAPIServer
from newapi_operator.crdgen import build_crds
from newapi_operator.dev.kube import DevKube
from newapi_operator.dev.persist import (
    Snapshotter,
    load_snapshot,
    registered_crds,
    restore,
    snapshot,
    write_snapshot,
)

API = "newapi.openova.io/v1alpha1"
INSTANCE = {
    "apiVersion": API, "kind": "NewAPIInstance", "metadata": {"name": "newapi", "namespace": "team"},
    "spec": {"tiers": {"pro": {}}},
}
KEY = {
    "apiVersion": API, "kind": "CustomerKey",
    "metadata": {"name": "k1", "namespace": "team", "finalizers": ["newapi.openova.io/finalizer"],
                 "annotations": {"kopf.zalando.org/last-handled-configuration": "{}"}},
    "spec": {"instanceRef": {"name": "newapi"}, "customer": {"externalId": "c-1"}, "tier": "pro",
             "creditGrant": 5},
}


def crds() -> list[dict[str, Any]]:
    return build_crds()


async def populate(kube: DevKube) -> dict[str, Any]:
    await kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})
    inst = await kube.apply(INSTANCE)
    key = await kube.apply(KEY)
    await kube.patch_status(API, "CustomerKey", "team", "k1", {"keyId": "key_1", "keyPrefix": "sk-abc"})
    owner = {"apiVersion": API, "kind": "NewAPIInstance", "name": "newapi", "uid": inst["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}
    await kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "newapi-admin", "namespace": "team", "ownerReferences": [owner]}, "stringData": {"token": "t"}})
    await kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k1-key", "namespace": "team"},
                      "stringData": {"key": "sk-abc123", "keyId": "key_1"}})
    return {"instance": inst, "key": key}


async def test_objects_come_back_with_their_identity_and_status(tmp_path: Path) -> None:
    path = tmp_path / "apiserver.json"
    async with LocalAPIServer(crds=crds()) as first:
        names = registered_crds(first)
        assert {"newapiinstances.newapi.openova.io", "kopfpeerings.kopf.dev"} <= names
        kube = DevKube(first.url)
        before = await populate(kube)
        async with httpx.AsyncClient(base_url=first.url) as http:  # an Event is not kept
            await http.post("/api/v1/namespaces/team/events", json={
                "metadata": {"name": "e1"}, "involvedObject": {"kind": "Secret", "name": "x"}, "message": "m"})
        write_snapshot(path, snapshot(first, names))
        live_key = await kube.get(API, "CustomerKey", "team", "k1")
        await kube.close()
    assert path.stat().st_mode & 0o777 == 0o600
    doc = load_snapshot(path)
    assert doc is not None
    assert not any(o["plural"] == "customresourcedefinitions" for o in doc["objects"])
    assert not any(o["plural"] == "events" for o in doc["objects"])

    async with LocalAPIServer(crds=crds()) as second:
        initial = {(rk, o["metadata"].get("namespace"), o["metadata"]["name"]) for rk, o in second.store.iter_objects()}
        report = restore(second, doc)
        assert report.skipped == []
        saved = {((i["group"], i["plural"]), i["object"]["metadata"].get("namespace"), i["object"]["metadata"]["name"])
                 for i in doc["objects"]}
        assert report.restored == len(saved - initial) >= 5  # what a fresh server has already is left alone
        kube = DevKube(second.url)
        key = await kube.get(API, "CustomerKey", "team", "k1")
        inst = await kube.get(API, "NewAPIInstance", "team", "newapi")
        admin = await kube.get("v1", "Secret", "team", "newapi-admin")
        assert key is not None
        assert inst is not None
        assert admin is not None
        assert live_key is not None
        for field in ("uid", "creationTimestamp", "generation", "finalizers", "annotations"):
            assert key["metadata"][field] == live_key["metadata"][field], field
        assert key["status"] == {"keyId": "key_1", "keyPrefix": "sk-abc"}
        assert inst["metadata"]["uid"] == before["instance"]["metadata"]["uid"]
        assert admin["metadata"]["ownerReferences"][0]["uid"] == inst["metadata"]["uid"]
        # Applying the same object again is a no-op: no new resourceVersion.
        again = await kube.apply(KEY)
        assert again["metadata"]["resourceVersion"] == key["metadata"]["resourceVersion"]
        # The server keeps working normally: writes, and the garbage collector by uid.
        async with httpx.AsyncClient(base_url=second.url) as http:
            rsp = await http.delete(f"/apis/{API}/namespaces/team/newapiinstances/newapi")
            assert rsp.status_code == 200
            for _ in range(100):
                if (await http.get("/api/v1/namespaces/team/secrets/newapi-admin")).status_code == 404:
                    break
                import asyncio

                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the garbage collector did not follow the restored owner reference")
        assert second.errors == []
        await kube.close()


async def test_objects_that_no_longer_validate_are_skipped_and_reported(tmp_path: Path) -> None:
    async with LocalAPIServer(crds=crds()) as first:
        kube = DevKube(first.url)
        await populate(kube)
        doc = snapshot(first, registered_crds(first))
        await kube.close()
    for item in doc["objects"]:
        if item["plural"] == "customerkeys":
            item["object"]["spec"]["tier"] = ""  # now invalid (minLength 1)
        if item["plural"] == "widgets":
            raise AssertionError("unexpected")
    doc["objects"].append({"group": "example.com", "plural": "widgets", "object": {"metadata": {"name": "w"}}})
    async with LocalAPIServer(crds=crds()) as second:
        report = restore(second, json.loads(json.dumps(doc)))
        assert len(report.skipped) == 2
        assert report.skipped[0].startswith("customerkeys team/k1: no longer valid: ")
        assert "tier" in report.skipped[0]
        assert report.skipped[1] == "widgets w: the API server no longer serves widgets"


async def test_the_snapshotter_saves_only_changes(tmp_path: Path) -> None:
    path = tmp_path / "apiserver.json"
    async with LocalAPIServer(crds=crds()) as server:
        snaps = Snapshotter(server, path, registered_crds(server), interval=3600)
        snaps.start()
        snaps.save()
        assert not path.exists()  # nothing changed since start
        kube = DevKube(server.url)
        await kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
                          "data": {"a": "1"}})
        snaps.save()
        first = path.stat().st_mtime_ns
        snaps.save()
        assert path.stat().st_mtime_ns == first
        await snaps.stop()
        await kube.close()
    doc = load_snapshot(path)
    assert doc is not None
    assert any(o["object"]["metadata"]["name"] == "c" for o in doc["objects"])


def test_an_unreadable_snapshot_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "apiserver.json"
    assert load_snapshot(path) is None
    path.write_text("{nope")
    with pytest.raises(ValueError, match="move it away"):
        load_snapshot(path)
