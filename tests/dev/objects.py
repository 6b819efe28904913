"""Objects shared by the ``newapi dev`` tests."""

from __future__ import annotations

from typing import Any


def gateway_deployment() -> dict[str, Any]:
    """What the operator renders for NewAPIInstance default/newapi (trimmed to what matters locally)."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "newapi", "namespace": "default", "generation": 3,
                     "labels": {"app.kubernetes.io/managed-by": "newapi-operator"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/instance": "newapi"}}, "template": {
            "metadata": {"labels": {"app.kubernetes.io/instance": "newapi"}},
            "spec": {
                "containers": [{
                    "name": "gateway", "image": "ghcr.io/openova-io/newapi-operator:0.1.0",
                    "args": ["gateway", "--kube", "--namespace", "default", "--instance", "newapi",
                             "--port", "8080", "--admin-port", "8081",
                             "--admin-token-file", "/var/run/newapi/admin/token", "--log-format", "json"],
                    "workingDir": "/var/lib/newapi",
                    "env": [
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "SQL_DSN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "SQL_DSN"}}},
                        {"name": "VALKEY_URL", "value": "redis://valkey:6379/0"},
                    ],
                    "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 8081}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5,
                                       "failureThreshold": 3},
                    "volumeMounts": [{"name": "admin-token", "mountPath": "/var/run/newapi/admin", "readOnly": True},
                                     {"name": "state", "mountPath": "/var/lib/newapi"},
                                     {"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [{"name": "admin-token", "secret": {"secretName": "newapi-admin", "defaultMode": 288}},
                            {"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
            },
        }},
    }
