"""Every child object of a NewAPIInstance, rendered from its spec (pure; no I/O).

All children carry the instance's labels (:func:`.constants.labels`) and a controller owner
reference to the instance, so the garbage collector removes them with it. Nothing in the pod
template depends on the routing table or the upstream credentials: the gateway watches the
ConfigMap and Secret and reloads them in place, so a routing change never rolls the pods.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from newapi_operator.api.v1alpha1 import NewAPIInstanceSpec

from . import constants as c

#: Resources of the gateway container.
GATEWAY_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
#: The gateway pod's user and group (non-root).
GATEWAY_UID = 10001
#: Paths of the customer API served on ``ingress.host`` (the admin API is never among them).
CUSTOMER_PATHS = ("/v1", "/quota", "/legal")
#: The admin API path prefix, the only path served on ``ingress.adminHost``.
ADMIN_PATH = "/api/v1/admin"
#: Namespaces labelled so may reach the admin port (the ingress controller's, the portal's).
ADMIN_ACCESS_LABEL = f"{c.PREFIX}/admin-access"


@dataclass(frozen=True)
class Owner:
    """The instance the children belong to."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": c.API_VERSION,
            "kind": "NewAPIInstance",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class RenderInput:
    """Everything the children depend on besides the spec."""

    owner: Owner
    spec: NewAPIInstanceSpec
    routes_data: dict[str, str]  # ConfigMap data (plain routes.json) ...
    routes_binary: dict[str, str]  # ... or binaryData (routes.json.gz, base64), see routes.py
    upstream: dict[str, str]  # credential name -> base64 key
    admin_token: str
    image: str
    external_secrets_served: bool = False
    operator_namespace: str | None = None


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _meta(inp: RenderInput, name: str, component: str = "gateway") -> dict[str, Any]:
    return {
        "name": name,
        "namespace": inp.owner.namespace,
        "labels": c.labels(inp.owner.name, component),
        "ownerReferences": [inp.owner.reference()],
    }


def service_account(inp: RenderInput) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(inp, inp.owner.name)}


def role(inp: RenderInput) -> dict[str, Any]:
    """Read access to the instance's own routing ConfigMap and upstream Secret, and nothing else."""
    name = inp.owner.name
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(inp, c.gateway_role_name(name)),
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [c.routes_name(name)],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [c.upstream_name(name)],
             "verbs": ["get", "list", "watch"]},
        ],
    }


def role_binding(inp: RenderInput) -> dict[str, Any]:
    name = inp.owner.name
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(inp, c.gateway_role_name(name)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": c.gateway_role_name(name)},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": inp.owner.namespace}],
    }


def routes_config_map(inp: RenderInput) -> dict[str, Any]:
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(inp, c.routes_name(inp.owner.name)),
        "data": dict(inp.routes_data),
    }
    if inp.routes_binary:
        cm["binaryData"] = dict(inp.routes_binary)
    return cm


def upstream_secret(inp: RenderInput) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(inp, c.upstream_name(inp.owner.name)),
        "type": "Opaque",
        "data": dict(sorted(inp.upstream.items())),
    }


def admin_secret(inp: RenderInput) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(inp, c.admin_secret_name(inp.owner.name), "admin"),
        "type": "Opaque",
        "data": {c.ADMIN_TOKEN_KEY: b64(inp.admin_token)},
    }


def _env(inp: RenderInput) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
    ]
    if inp.spec.database.existing_secret:
        env.append({"name": "SQL_DSN", "valueFrom": {"secretKeyRef": {
            "name": inp.spec.database.existing_secret, "key": "SQL_DSN"}}})
    if inp.spec.valkey.url:
        env.append({"name": "VALKEY_URL", "value": inp.spec.valkey.url})
    return env


def deployment(inp: RenderInput) -> dict[str, Any]:
    """The gateway: ``newapi gateway --kube --namespace NS --instance NAME`` (hot-reloads routes)."""
    name, namespace = inp.owner.name, inp.owner.namespace
    selector = c.selector_labels(name)
    args = [
        "gateway", "--kube", "--namespace", namespace, "--instance", name,
        "--port", str(c.GATEWAY_PORT),
        "--admin-port", str(c.ADMIN_PORT),
        "--admin-token-file", f"{c.ADMIN_TOKEN_DIR}/{c.ADMIN_TOKEN_KEY}",
        "--state-dir", c.STATE_DIR,
        "--log-format", "json",
    ]
    container: dict[str, Any] = {
        "name": "gateway",
        "image": inp.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "workingDir": c.STATE_DIR,
        "env": _env(inp),
        "ports": [
            {"name": "http", "containerPort": c.GATEWAY_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": c.ADMIN_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3,
        },
        "resources": GATEWAY_RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "admin-token", "mountPath": c.ADMIN_TOKEN_DIR, "readOnly": True},
            {"name": "state", "mountPath": c.STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, the root filesystem is read-only
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(inp, name),
        "spec": {
            "replicas": inp.spec.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": c.labels(name)},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": True,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": GATEWAY_UID,
                        "runAsGroup": GATEWAY_UID,
                        "fsGroup": GATEWAY_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                            "labelSelector": {"matchLabels": selector}},
                    }]}},
                    "containers": [container],
                    "volumes": [
                        {"name": "admin-token",
                         "secret": {"secretName": c.admin_secret_name(name), "defaultMode": 0o440}},
                        {"name": "state", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def service(inp: RenderInput) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(inp, inp.owner.name),
        "spec": {
            "type": "ClusterIP",
            "selector": c.selector_labels(inp.owner.name),
            "ports": [
                {"name": "http", "port": c.SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "admin", "port": c.ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"},
            ],
        },
    }


def _ingress(
    inp: RenderInput, name: str, host: str, paths: tuple[str, ...], port: str, tls_secret: str
) -> dict[str, Any]:
    ing = inp.spec.ingress
    assert ing is not None
    meta = _meta(inp, name, "admin" if port == "admin" else "gateway")
    meta["annotations"] = {"cert-manager.io/cluster-issuer": ing.tls_issuer}
    spec: dict[str, Any] = {
        "tls": [{"hosts": [host], "secretName": tls_secret}],
        "rules": [{"host": host, "http": {"paths": [
            {"path": p, "pathType": "Prefix",
             "backend": {"service": {"name": inp.owner.name, "port": {"name": port}}}}
            for p in paths
        ]}}],
    }
    if ing.class_name:
        spec["ingressClassName"] = ing.class_name
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def customer_ingress(inp: RenderInput) -> dict[str, Any]:
    assert inp.spec.ingress is not None
    return _ingress(inp, inp.owner.name, inp.spec.ingress.host, CUSTOMER_PATHS, "http", f"{inp.owner.name}-tls")


def admin_ingress(inp: RenderInput) -> dict[str, Any]:
    assert inp.spec.ingress is not None
    name = c.admin_ingress_name(inp.owner.name)
    return _ingress(inp, name, inp.spec.ingress.admin_host, (ADMIN_PATH,), "admin", f"{name}-tls")


def network_policy(inp: RenderInput) -> dict[str, Any]:
    """Customer port open; admin port only from this namespace, the operator's, and labelled namespaces."""
    admin_from: list[dict[str, Any]] = [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {ADMIN_ACCESS_LABEL: "true"}}},
    ]
    if inp.operator_namespace and inp.operator_namespace != inp.owner.namespace:
        admin_from.append({"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": inp.operator_namespace}}})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(inp, inp.owner.name),
        "spec": {
            "podSelector": {"matchLabels": c.selector_labels(inp.owner.name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": "http"}]},
                {"ports": [{"protocol": "TCP", "port": "admin"}], "from": admin_from},
            ],
        },
    }


def pod_disruption_budget(inp: RenderInput) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(inp, inp.owner.name),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": c.selector_labels(inp.owner.name)}},
    }


def external_secret_decision(inp: RenderInput) -> tuple[bool, str]:
    """Whether the admin-token ExternalSecret is rendered, and the ``status.externalSecret`` text."""
    cat = inp.spec.catalyst_integration
    es = cat.external_secret
    if not cat.enabled:
        return False, "Skipped: spec.catalystIntegration.enabled is false"
    if not es.enabled:
        return False, "Skipped: spec.catalystIntegration.externalSecret.enabled is false"
    if not inp.external_secrets_served:
        return False, ("Skipped: external-secrets.io/v1beta1 ExternalSecret is not served by this cluster; "
                       "install the External Secrets Operator to provision the portal's admin token")
    if not es.remote_ref.key:
        return False, ("Skipped: spec.catalystIntegration.externalSecret.remoteRef.key is empty; set the secret-store "
                       "path of the admin token, e.g. sovereign/<fqdn>/newapi/admin-token")
    return True, (f"Rendered: ExternalSecret {es.target_secret_name} from {es.secret_store_ref.kind}/"
                  f"{es.secret_store_ref.name} key {es.remote_ref.key} property {es.remote_ref.property}")


def external_secret(inp: RenderInput) -> dict[str, Any]:
    es = inp.spec.catalyst_integration.external_secret
    return {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "metadata": _meta(inp, es.target_secret_name, "admin"),
        "spec": {
            "refreshInterval": es.refresh_interval,
            "secretStoreRef": {"kind": es.secret_store_ref.kind, "name": es.secret_store_ref.name},
            "target": {
                "name": es.target_secret_name,
                "creationPolicy": "Owner",
                "template": {"metadata": {"labels": c.labels(inp.owner.name, "admin")}},
            },
            "data": [{
                "secretKey": es.remote_ref.property,
                "remoteRef": {"key": es.remote_ref.key, "property": es.remote_ref.property},
            }],
        },
    }


@dataclass(frozen=True)
class Rendered:
    """The desired children, the kinds/names that must NOT exist (e.g. a PDB at one replica), the ES note."""

    objects: list[dict[str, Any]]
    absent: list[tuple[str, str, str]]  # (apiVersion, kind, name)
    external_secret: str


def render_children(inp: RenderInput) -> Rendered:
    """All children of the instance in apply order (RBAC and config before the Deployment)."""
    name = inp.owner.name
    objects = [
        service_account(inp),
        role(inp),
        role_binding(inp),
        routes_config_map(inp),
        upstream_secret(inp),
        admin_secret(inp),
        deployment(inp),
        service(inp),
        network_policy(inp),
    ]
    absent: list[tuple[str, str, str]] = []
    if inp.spec.ingress is not None:
        objects += [customer_ingress(inp), admin_ingress(inp)]
    else:
        absent += [("networking.k8s.io/v1", "Ingress", name),
                   ("networking.k8s.io/v1", "Ingress", c.admin_ingress_name(name))]
    if inp.spec.replicas > 1:
        objects.append(pod_disruption_budget(inp))
    else:
        absent.append(("policy/v1", "PodDisruptionBudget", name))
    render_es, note = external_secret_decision(inp)
    if render_es:
        objects.append(external_secret(inp))
    elif inp.external_secrets_served:
        absent.append(("external-secrets.io/v1beta1", "ExternalSecret",
                       inp.spec.catalyst_integration.external_secret.target_secret_name))
    return Rendered(objects, absent, note)
