"""Conformance: custom resources are validated, defaulted and pruned by their structural schema and CEL rules."""

from __future__ import annotations

from typing import Any

import pytest


async def rejected(cluster: Any, spec: dict[str, Any]) -> dict[str, Any]:
    body = cluster.widget("bad")
    body["spec"] = spec
    response = await cluster.client.post(cluster.widgets(), json=body)
    assert response.status_code == 422, response.text
    status: dict[str, Any] = response.json()
    assert status["kind"] == "Status"
    assert status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Widget"
    assert status["details"]["name"] == "bad"
    return status


def fields(status: dict[str, Any]) -> set[str]:
    return {c.get("field", "") for c in status["details"]["causes"]}


@pytest.mark.parametrize(("spec", "field"), [
    ({}, "spec.size"),                                      # required
    ({"size": "two"}, "spec.size"),                         # type
    ({"size": 0}, "spec.size"),                             # minimum
    ({"size": 11}, "spec.size"),                            # maximum
    ({"size": 1, "color": "purple"}, "spec.color"),         # enum
    ({"size": 1, "title": "x" * 21}, "spec.title"),         # maxLength
    ({"size": 1, "title": "no digits 1"}, "spec.title"),    # pattern
    ({"size": 1, "tags": ["a", "b", "c", "d"]}, "spec.tags"),   # maxItems
    ({"size": 1, "settings": {"k": 1}}, "spec.settings[k]"),    # additionalProperties type
])
async def test_schema_violations_answer_422_naming_the_field(cluster: Any, spec: dict[str, Any], field: str) -> None:
    status = await rejected(cluster, spec)
    # Map keys: "[k]" as CEL paths and this emulator say; schema errors of some versions say ".k".
    assert {field, field.replace("[", ".").rstrip("]")} & fields(status), status


async def test_duplicate_set_items_answer_422(cluster: Any) -> None:
    status = await rejected(cluster, {"size": 1, "tags": ["a", "a"]})
    assert any(f.startswith("spec.tags") for f in fields(status)), status


async def test_cel_rule_answers_422_with_its_message_and_field(cluster: Any) -> None:
    status = await rejected(cluster, {"size": 5, "limit": 2})
    assert "limit must be at least size" in status["message"]
    assert "spec.limit" in fields(status)
    ok = cluster.widget("good", size=5, limit=5)
    assert (await cluster.client.post(cluster.widgets(), json=ok)).status_code == 201


async def test_cel_rule_applies_on_update(cluster: Any) -> None:
    await cluster.create(cluster.widgets(), cluster.widget("upd", size=2, limit=3))
    response = await cluster.patch(cluster.widgets("upd"), {"spec": {"size": 4}})
    assert response.status_code == 422, response.text
    assert "limit must be at least size" in response.json()["message"]


async def test_defaults_are_applied(cluster: Any) -> None:
    obj = await cluster.create(cluster.widgets(), cluster.widget("dflt", size=1))
    assert obj["spec"]["color"] == "red"
    assert obj["spec"]["nested"] == {"mode": "auto"}
    obj = await cluster.create(cluster.widgets(), cluster.widget("dflt2", size=1, nested={}))
    assert obj["spec"]["nested"] == {"mode": "auto"}


async def test_unknown_fields_are_pruned_with_a_warning(cluster: Any) -> None:
    body = cluster.widget("prune", size=1, unknown="x", free={"anything": {"goes": 1}})
    body["surprise"] = True
    response = await cluster.client.post(cluster.widgets(), json=body)
    assert response.status_code == 201, response.text
    obj = response.json()
    assert "unknown" not in obj["spec"]
    assert "surprise" not in obj
    assert obj["spec"]["free"] == {"anything": {"goes": 1}}  # x-kubernetes-preserve-unknown-fields
    warnings = " ".join(response.headers.get_list("warning"))
    assert "unknown field" in warnings
    assert "spec.unknown" in warnings


async def test_strict_field_validation_rejects_unknown_fields(cluster: Any) -> None:
    body = cluster.widget("strict", size=1, unknown="x")
    response = await cluster.client.post(cluster.widgets(), json=body, params={"fieldValidation": "Strict"})
    assert response.status_code == 400, response.text
    assert "spec.unknown" in response.json()["message"]


async def test_crd_created_over_http_is_served_until_deleted(cluster: Any) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gizmos.extra.newapi.test"},
        "spec": {"group": "extra.newapi.test", "scope": "Cluster",
                 "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "properties": {
                         "n": {"type": "integer"}}}}}}}]},
    }
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    response = await cluster.client.post(crds, json=crd)
    assert response.status_code == 201, response.text
    try:
        async def served() -> bool:
            return (await cluster.client.get("/apis/extra.newapi.test/v1/gizmos")).status_code == 200

        await cluster.eventually(served, 60, "the gizmo CRD to be served")
        gizmo = {"apiVersion": "extra.newapi.test/v1", "kind": "Gizmo", "metadata": {"name": "g1"}, "spec": {"n": 1}}
        created = await cluster.client.post("/apis/extra.newapi.test/v1/gizmos", json=gizmo)
        assert created.status_code == 201, created.text
        assert "namespace" not in created.json()["metadata"]  # cluster-scoped
    finally:
        await cluster.client.delete(f"{crds}/gizmos.extra.newapi.test")
    await cluster.gone(f"{crds}/gizmos.extra.newapi.test")

    async def unserved() -> bool:
        return (await cluster.client.get("/apis/extra.newapi.test/v1/gizmos")).status_code == 404

    await cluster.eventually(unserved, 60, "the gizmo CRD to stop being served")


async def test_invalid_crd_answers_422(cluster: Any) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "wrong.name.test"},
           "spec": {"group": "extra.newapi.test", "scope": "Namespaced",
                    "names": {"plural": "things", "kind": "Thing"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    response = await cluster.client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert response.status_code == 422, response.text
