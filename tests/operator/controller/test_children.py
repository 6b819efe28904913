"""The children of an instance, rendered (pure): shape, labels, owner, RBAC, pod template, optional parts."""

from __future__ import annotations

import base64
import copy
from typing import Any

import kubernetes_validate
import pytest

from newapi_operator.api.v1alpha1 import NewAPIInstanceSpec
from newapi_operator.controller import constants as c
from newapi_operator.controller.children import (
    ADMIN_PATH,
    Owner,
    Rendered,
    RenderInput,
    render_children,
)

from .objects import instance

K8S_VERSION = "1.33"
OWNER = Owner("gw", "tenant-a", "0b1c2d3e-0000-4000-8000-000000000001")


def _inp(
    spec: dict[str, Any] | None = None, *, routes: str = '{"instance":"gw"}', upstream: dict[str, str] | None = None,
    es_served: bool = False, operator_ns: str | None = "newapi-system",
) -> RenderInput:
    doc = instance(**(spec or {}))
    return RenderInput(OWNER, NewAPIInstanceSpec.model_validate(doc["spec"]), {"routes.json": routes}, {},
                       upstream or {"oai": base64.b64encode(b"k").decode()}, "admin-token-value",
                       "ghcr.io/openova-io/newapi-operator:test", es_served, operator_ns)


def _by_kind(rendered: Rendered) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in rendered.objects}


FULL = {"replicas": 3, "database": {"existingSecret": "gw-db"}, "valkey": {"url": "redis://valkey:6379/0"},
        "ingress": {"host": "api.example.com", "adminHost": "admin.example.com", "className": "nginx"}}


def test_every_child_is_labelled_owned_and_valid_for_the_api_server() -> None:
    rendered = render_children(_inp(FULL))
    kinds = sorted(o["kind"] for o in rendered.objects)
    assert kinds == sorted(["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Secret", "Secret", "Deployment",
                            "Service", "NetworkPolicy", "Ingress", "Ingress", "PodDisruptionBudget"])
    for obj in rendered.objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "tenant-a"
        assert meta["labels"][c.LABEL_NAME] == "newapi-gateway"
        assert meta["labels"][c.LABEL_INSTANCE] == "gw"
        assert meta["labels"][c.LABEL_MANAGED_BY] == "newapi-operator"
        assert meta["ownerReferences"] == [{
            "apiVersion": "newapi.openova.io/v1alpha1", "kind": "NewAPIInstance", "name": "gw",
            "uid": OWNER.uid, "controller": True, "blockOwnerDeletion": True}]
        kubernetes_validate.validate(copy.deepcopy(obj), K8S_VERSION, strict=True)


def test_the_gateway_may_read_only_its_own_routes_and_upstream_secret() -> None:
    objs = _by_kind(render_children(_inp()))
    role = objs[("Role", "gw-gateway")]
    read = ["get", "list", "watch"]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["gw-routes"], "verbs": read},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["gw-upstream"], "verbs": read},
    ]
    binding = objs[("RoleBinding", "gw-gateway")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gw-gateway"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gw", "namespace": "tenant-a"}]
    assert objs[("Deployment", "gw")]["spec"]["template"]["spec"]["serviceAccountName"] == "gw"


def test_routes_upstream_and_admin_secrets() -> None:
    objs = _by_kind(render_children(_inp(routes='{"x":1}')))
    assert objs[("ConfigMap", "gw-routes")]["data"] == {"routes.json": '{"x":1}'}
    assert objs[("Secret", "gw-upstream")]["data"] == {"oai": base64.b64encode(b"k").decode()}
    admin = objs[("Secret", "gw-admin")]
    assert base64.b64decode(admin["data"]["token"]).decode() == "admin-token-value"


def test_deployment_runs_the_gateway_hardened() -> None:
    dep = _by_kind(render_children(_inp(FULL)))[("Deployment", "gw")]
    spec = dep["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["securityContext"]["runAsNonRoot"] is True
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[:6] == ["gateway", "--kube", "--namespace", "tenant-a", "--instance", "gw"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["SQL_DSN"]["valueFrom"]["secretKeyRef"] == {"name": "gw-db", "key": "SQL_DSN"}
    assert env["VALKEY_URL"]["value"] == "redis://valkey:6379/0"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {c.ADMIN_TOKEN_DIR, "/tmp"} <= mounts


def test_embedded_state_has_no_database_wiring() -> None:
    dep = _by_kind(render_children(_inp()))[("Deployment", "gw")]
    names = {e["name"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert names == {"POD_NAMESPACE", "POD_NAME"}


def test_routing_and_credential_changes_do_not_touch_the_pod_template() -> None:
    a = _by_kind(render_children(_inp(routes='{"v":1}', upstream={"a": "eA=="})))[("Deployment", "gw")]
    b = _by_kind(render_children(_inp(routes='{"v":2}', upstream={"b": "eQ=="})))[("Deployment", "gw")]
    assert a == b


def test_ingresses_split_customer_and_admin_paths() -> None:
    objs = _by_kind(render_children(_inp(FULL)))
    customer, admin = objs[("Ingress", "gw")], objs[("Ingress", "gw-admin")]
    assert customer["spec"]["rules"][0]["host"] == "api.example.com"
    assert admin["spec"]["rules"][0]["host"] == "admin.example.com"
    customer_paths = [p["path"] for p in customer["spec"]["rules"][0]["http"]["paths"]]
    admin_paths = [p["path"] for p in admin["spec"]["rules"][0]["http"]["paths"]]
    assert admin_paths == [ADMIN_PATH]
    assert not any(p.startswith("/api") for p in customer_paths)
    assert admin["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "admin"}
    assert customer["spec"]["ingressClassName"] == "nginx"
    assert customer["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"


def test_optional_children_are_listed_as_absent_when_not_wanted() -> None:
    rendered = render_children(_inp())
    kinds = {o["kind"] for o in rendered.objects}
    assert "Ingress" not in kinds
    assert "PodDisruptionBudget" not in kinds
    assert ("policy/v1", "PodDisruptionBudget", "gw") in rendered.absent
    assert ("networking.k8s.io/v1", "Ingress", "gw-admin") in rendered.absent


def test_network_policy_keeps_the_admin_port_private() -> None:
    np = _by_kind(render_children(_inp()))[("NetworkPolicy", "gw")]
    rules = np["spec"]["ingress"]
    assert rules[0] == {"ports": [{"protocol": "TCP", "port": "http"}]}
    assert rules[1]["ports"] == [{"protocol": "TCP", "port": "admin"}]
    sources = rules[1]["from"]
    assert {"podSelector": {}} in sources
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "newapi-system"}}} in sources


ES_ON = {"catalystIntegration": {"enabled": True, "externalSecret": {"remoteRef": {"key": "sovereign/x/newapi/admin"}}}}


@pytest.mark.parametrize(("spec", "served", "rendered", "why"), [
    (ES_ON, True, True, "Rendered: ExternalSecret catalyst-newapi-admin-token"),
    (ES_ON, False, False, "not served by this cluster"),
    ({"catalystIntegration": {"enabled": False}}, True, False, "catalystIntegration.enabled is false"),
    ({"catalystIntegration": {"externalSecret": {"enabled": False}}}, True, False, "externalSecret.enabled is false"),
    ({}, True, False, "remoteRef.key is empty"),
])
def test_external_secret_only_when_served_and_configured(spec: dict[str, Any], served: bool, rendered: bool,
                                                         why: str) -> None:
    out = render_children(_inp(spec, es_served=served))
    es = [o for o in out.objects if o["kind"] == "ExternalSecret"]
    assert bool(es) is rendered
    assert why in out.external_secret
    if rendered:
        remote = {"key": "sovereign/x/newapi/admin", "property": "ADMIN_API_TOKEN"}
        assert es[0]["spec"]["data"] == [{"secretKey": "ADMIN_API_TOKEN", "remoteRef": remote}]
        assert es[0]["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "vault-region1"}
    elif served:
        assert ("external-secrets.io/v1beta1", "ExternalSecret", "catalyst-newapi-admin-token") in out.absent
