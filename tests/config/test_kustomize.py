"""config/: every kustomize base builds, and every object validates against Kubernetes' own
OpenAPI schemas (kubernetes-validate) or, for our kinds, against our CRD schema and CEL rules."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest

from newapi_operator import crdgen
from newapi_operator.api import compliance
from newapi_operator.api.v1alpha1 import GROUP

K8S_VERSION = "1.31"
BASES = ("crd", "rbac", "manager", "samples", "default")
CRDS = {c["spec"]["names"]["kind"]: c for c in crdgen.build_crds()}


def _ours(obj: dict[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).startswith(f"{GROUP}/")


@pytest.mark.parametrize("base", BASES)
def test_every_object_validates(base: str, built: dict[str, list[dict[str, Any]]], crd_check: ModuleType) -> None:
    objects = built[base]
    assert objects, f"config/{base} builds to nothing"
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if _ours(obj):
            assert crd_check.crd_errors(CRDS[obj["kind"]], obj) == [], name
            assert compliance.validate_object(obj) == [], name
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_default_installs_everything_in_newapi_system(built: dict[str, list[dict[str, Any]]]) -> None:
    objects = built["default"]
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
    assert kinds == sorted([
        "Namespace/newapi-system",
        *(f"CustomResourceDefinition/{c['metadata']['name']}" for c in CRDS.values()),
        "CustomResourceDefinition/clusterkopfpeerings.kopf.dev",
        "ServiceAccount/newapi-operator",
        "ClusterRole/newapi-operator",
        "ClusterRoleBinding/newapi-operator",
        "Deployment/newapi-operator",
        "PodDisruptionBudget/newapi-operator",
    ])
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in objects:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == "newapi-system", obj["kind"]
    [binding] = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "newapi-operator", "namespace": "newapi-system"}]


def test_crd_base_ships_the_generated_crds(built: dict[str, list[dict[str, Any]]]) -> None:
    shipped = {o["metadata"]["name"]: o for o in built["crd"]}
    for crd in CRDS.values():
        assert shipped[crd["metadata"]["name"]] == crd


def test_operator_deployment_is_hardened_and_highly_available(built: dict[str, list[dict[str, Any]]]) -> None:
    [deploy] = [o for o in built["manager"] if o["kind"] == "Deployment"]
    spec = deploy["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "newapi-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    [container] = pod["containers"]
    assert container["image"].startswith("ghcr.io/openova-io/newapi-operator:")
    assert container["args"][0] == "operator"
    assert "--peering=newapi-operator" in container["args"]
    assert any(a.startswith("--liveness=http://0.0.0.0:8080/healthz") for a in container["args"])
    assert {e["name"] for e in container["env"]} >= {"POD_ID"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == get["port"])
        assert (get["path"], port) == ("/healthz", 8080)
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]


def test_rbac_is_least_privilege(built: dict[str, list[dict[str, Any]]]) -> None:
    [role] = [o for o in built["rbac"] if o["kind"] == "ClusterRole"]
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in (group, resource)
                assert "*" not in rule["verbs"]
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    for verbs in grants.values():
        assert not verbs & {"escalate", "bind", "impersonate", "deletecollection"}
    ours = {"newapiinstances", "channels", "customerkeys"}
    for plural in ours:
        assert grants[(GROUP, plural)] == {"get", "list", "watch", "patch", "update"}
        assert grants[(GROUP, f"{plural}/status")] == {"get", "patch", "update"}
        assert grants[(GROUP, f"{plural}/finalizers")] == {"update"}
    crud = {"get", "list", "watch", "create", "update", "patch", "delete"}
    children = [
        ("", "serviceaccounts"), ("", "configmaps"), ("", "secrets"), ("", "services"),
        ("apps", "deployments"), ("networking.k8s.io", "ingresses"), ("networking.k8s.io", "networkpolicies"),
        ("policy", "poddisruptionbudgets"), ("rbac.authorization.k8s.io", "roles"),
        ("rbac.authorization.k8s.io", "rolebindings"), ("external-secrets.io", "externalsecrets"),
    ]
    for child in children:
        assert grants[child] == crud, child
    assert grants[("", "events")] == {"create", "patch"}
    assert grants[("events.k8s.io", "events")] == {"create", "patch"}
    assert grants[("apiextensions.k8s.io", "customresourcedefinitions")] == {"get", "list", "watch"}
    assert grants[("", "namespaces")] == {"list", "watch"}
    assert grants[("kopf.dev", "clusterkopfpeerings")] == {"get", "list", "watch", "create", "patch"}
    assert set(grants) == {
        *children, *((GROUP, p) for p in ours), *((GROUP, f"{p}/status") for p in ours),
        *((GROUP, f"{p}/finalizers") for p in ours), ("", "events"), ("events.k8s.io", "events"),
        ("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces"), ("kopf.dev", "clusterkopfpeerings"),
    }
