"""Conformance: discovery documents (legacy JSON discovery, as kubectl/Kopf/kubernetes-asyncio read it)."""

from __future__ import annotations

from typing import Any

import pytest

CORE_KINDS = {
    "namespaces": ("Namespace", False),
    "configmaps": ("ConfigMap", True),
    "secrets": ("Secret", True),
    "services": ("Service", True),
    "serviceaccounts": ("ServiceAccount", True),
    "events": ("Event", True),
}
GROUP_KINDS = {
    "apps/v1": {"deployments": "Deployment"},
    "rbac.authorization.k8s.io/v1": {"roles": "Role", "rolebindings": "RoleBinding"},
    "networking.k8s.io/v1": {"ingresses": "Ingress", "networkpolicies": "NetworkPolicy"},
    "policy/v1": {"poddisruptionbudgets": "PodDisruptionBudget"},
    "coordination.k8s.io/v1": {"leases": "Lease"},
    "events.k8s.io/v1": {"events": "Event"},
    "apiextensions.k8s.io/v1": {"customresourcedefinitions": "CustomResourceDefinition"},
}


def by_name(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in resources}


async def test_core_api_versions_and_resources(cluster: Any) -> None:
    api = await cluster.get("/api")
    assert api["kind"] == "APIVersions"
    assert "v1" in api["versions"]
    core = await cluster.get("/api/v1")
    assert core["kind"] == "APIResourceList"
    assert core["groupVersion"] == "v1"  # not "/v1": kubectl would know no core types
    resources = by_name(core["resources"])
    for plural, (kind, namespaced) in CORE_KINDS.items():
        assert resources[plural]["kind"] == kind
        assert resources[plural]["namespaced"] is namespaced
        assert {"get", "list", "watch", "create", "delete", "patch", "update"} <= set(resources[plural]["verbs"])
    assert "ns" in resources["namespaces"]["shortNames"]
    assert "cm" in resources["configmaps"]["shortNames"]


@pytest.mark.parametrize("group_version", sorted(GROUP_KINDS))
async def test_group_discovery(cluster: Any, group_version: str) -> None:
    group = group_version.split("/")[0]
    groups = {g["name"]: g for g in (await cluster.get("/apis"))["groups"]}
    assert group_version in [v["groupVersion"] for v in groups[group]["versions"]]
    assert (await cluster.get(f"/apis/{group}"))["name"] == group
    doc = await cluster.get(f"/apis/{group_version}")
    assert doc["groupVersion"] == group_version
    resources = by_name(doc["resources"])
    for plural, kind in GROUP_KINDS[group_version].items():
        assert resources[plural]["kind"] == kind


async def test_custom_resource_discovery(cluster: Any) -> None:
    doc = await cluster.get("/apis/conformance.newapi.test/v1")
    resources = by_name(doc["resources"])
    widgets = resources["widgets"]
    assert widgets["kind"] == "Widget"
    assert widgets["singularName"] == "widget"
    assert widgets["namespaced"] is True
    assert widgets["shortNames"] == ["wdg"]
    assert resources["widgets/status"]["kind"] == "Widget"  # the status subresource is advertised
    group = await cluster.get("/apis/conformance.newapi.test")
    assert group["preferredVersion"]["groupVersion"] == "conformance.newapi.test/v1"


async def test_unknown_group_and_path_answer_404_status(cluster: Any) -> None:
    for path in ("/apis/nothing.example.com/v1", "/apis/nothing.example.com",
                 "/apis/conformance.newapi.test/v1/namespaces/default/gadgets"):
        response = await cluster.client.get(path)
        assert response.status_code == 404, path
        body = response.json()
        assert body["kind"] == "Status"
        assert body["code"] == 404


async def test_version_endpoint(cluster: Any) -> None:
    version = await cluster.get("/version")
    assert version["major"] == "1"
    assert version["gitVersion"].startswith("v1.")
