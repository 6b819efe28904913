"""Conformance: label selectors, field selectors and limit/continue pagination on lists."""

from __future__ import annotations

from typing import Any

import pytest

#: Objects every namespace has (kube-controller-manager creates them; so does the emulator).
SYSTEM = {"kube-root-ca.crt"}
LABELS = {
    "a": {"tier": "free", "env": "prod"},
    "b": {"tier": "pro", "env": "prod"},
    "c": {"tier": "pro", "env": "dev", "canary": "yes"},
    "d": {"env": "dev"},
}


async def names(cluster: Any, **params: Any) -> list[str]:
    response = await cluster.client.get(cluster.cm(), params=params)
    assert response.status_code == 200, response.text
    return sorted(i["metadata"]["name"] for i in response.json()["items"] if i["metadata"]["name"] not in SYSTEM)


@pytest.fixture
async def labelled(cluster: Any) -> Any:
    for name, labels in LABELS.items():
        await cluster.create(cluster.cm(), cluster.configmap(name, labels=labels))
    return cluster


@pytest.mark.parametrize(("selector", "expected"), [
    ("tier=pro", ["b", "c"]),
    ("tier==pro", ["b", "c"]),
    ("tier!=pro", ["a", "d"]),  # != also matches objects without the label
    ("tier in (free,pro)", ["a", "b", "c"]),
    ("tier notin (free)", ["b", "c", "d"]),
    ("canary", ["c"]),
    ("!canary", ["a", "b", "d"]),
    ("env=prod,tier=pro", ["b"]),
    ("env in (dev), !tier", ["d"]),
    ("", ["a", "b", "c", "d"]),
])
async def test_label_selectors(labelled: Any, selector: str, expected: list[str]) -> None:
    assert await names(labelled, labelSelector=selector) == expected


@pytest.mark.parametrize("selector", ["tier in free", "tier=(", "=pro", "tier in ()", "tier notin (a,"])
async def test_malformed_label_selector_answers_400(labelled: Any, selector: str) -> None:
    response = await labelled.client.get(labelled.cm(), params={"labelSelector": selector})
    assert response.status_code == 400, response.text
    assert response.json()["reason"] == "BadRequest"


async def test_field_selectors(labelled: Any) -> None:
    assert await names(labelled, fieldSelector="metadata.name=b") == ["b"]
    assert await names(labelled, fieldSelector="metadata.name!=b") == ["a", "c", "d"]
    assert await names(labelled, fieldSelector=f"metadata.namespace=={labelled.namespace},metadata.name=c") == ["c"]
    assert await names(labelled, fieldSelector="metadata.name=b", labelSelector="tier=free") == []
    everywhere = await labelled.client.get(labelled.cm(namespace=None),
                                           params={"fieldSelector": f"metadata.namespace={labelled.namespace}"})
    found = {i["metadata"]["name"] for i in everywhere.json()["items"]}
    assert found - SYSTEM == {"a", "b", "c", "d"}


async def test_unsupported_field_selector_answers_400(labelled: Any) -> None:
    response = await labelled.client.get(labelled.widgets(), params={"fieldSelector": "spec.size=1"})
    assert response.status_code == 400, response.text


async def test_pagination_with_limit_and_continue(labelled: Any) -> None:
    cluster = labelled
    first = (await cluster.client.get(cluster.cm(), params={"limit": "3"})).json()
    assert len(first["items"]) == 3
    token = first["metadata"]["continue"]
    assert token
    await cluster.create(cluster.cm(), cluster.configmap("zz-late"))  # not in the snapshot being paged
    second = (await cluster.client.get(cluster.cm(), params={"limit": "3", "continue": token})).json()
    paged = [i["metadata"]["name"] for i in first["items"] + second["items"]]
    assert sorted(set(paged) - SYSTEM) == ["a", "b", "c", "d"]
    assert len(paged) == len(set(paged))  # no object twice
    assert not second["metadata"].get("continue")
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_pagination_with_selector(labelled: Any) -> None:
    cluster = labelled
    first = (await cluster.client.get(cluster.cm(), params={"limit": "1", "labelSelector": "env=prod"})).json()
    second = (await cluster.client.get(cluster.cm(), params={
        "limit": "1", "labelSelector": "env=prod", "continue": first["metadata"]["continue"]})).json()
    assert sorted(i["metadata"]["name"] for i in first["items"] + second["items"]) == ["a", "b"]


async def test_delete_collection_by_label(labelled: Any) -> None:
    cluster = labelled
    response = await cluster.client.delete(cluster.cm(), params={"labelSelector": "env=dev"})
    assert response.status_code == 200, response.text
    assert await names(cluster) == ["a", "b"]


@pytest.mark.emulator_only("forces history compaction, which a real cluster does every 5 minutes")
async def test_stale_continue_token_answers_410(labelled: Any) -> None:
    cluster = labelled
    first = (await cluster.client.get(cluster.cm(), params={"limit": "1"})).json()
    await cluster.create(cluster.cm(), cluster.configmap("churn"))
    for i in range(120):
        await cluster.patch(cluster.cm("churn"), {"data": {"n": str(i)}})
    response = await cluster.client.get(cluster.cm(), params={"limit": "1", "continue": first["metadata"]["continue"]})
    assert response.status_code == 410, response.text
    assert response.json()["reason"] == "Expired"
