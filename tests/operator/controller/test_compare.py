"""What counts as drift: only fields the operator sets, exclusive maps, keyed lists (pure)."""

from __future__ import annotations

import copy
from typing import Any

from newapi_operator.controller.compare import differences, foreign_keys

DEPLOY: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "gw", "namespace": "ns", "labels": {"a": "1"},
                 "ownerReferences": [{"uid": "u1", "kind": "NewAPIInstance", "name": "gw", "controller": True}]},
    "spec": {"replicas": 1, "template": {"spec": {"containers": [{
        "name": "gateway", "image": "img:1", "args": ["gateway", "--kube"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}}}]}}},
}


def _live() -> dict[str, Any]:
    """DEPLOY as a real API server returns it: defaults and server fields added."""
    live = copy.deepcopy(DEPLOY)
    live["metadata"].update({"uid": "x", "resourceVersion": "7", "generation": 3, "managedFields": [{}],
                             "annotations": {"deployment.kubernetes.io/revision": "1"}})
    live["metadata"]["labels"]["extra"] = "by-someone"
    c = live["spec"]["template"]["spec"]["containers"][0]
    c["ports"][0]["protocol"] = "TCP"
    c["terminationMessagePath"] = "/dev/termination-log"
    c["readinessProbe"].update({"timeoutSeconds": 1, "periodSeconds": 10, "failureThreshold": 3})
    c["env"].append({"name": "INJECTED", "value": "by a webhook"})
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "mesh"})
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    live["status"] = {"readyReplicas": 1}
    return live


def test_server_defaults_and_foreign_additions_are_not_drift() -> None:
    assert differences(DEPLOY, _live(), kind="Deployment") == []


def test_changed_owned_fields_are_drift() -> None:
    live = _live()
    live["spec"]["replicas"] = 5
    live["spec"]["template"]["spec"]["containers"][0]["args"] = ["gateway"]
    live["spec"]["template"]["spec"]["containers"][0]["env"] = []
    assert differences(DEPLOY, live, kind="Deployment") == [
        "spec.replicas", "spec.template.spec.containers[0].args", "spec.template.spec.containers[0].env[0]"]


def test_missing_container_by_name_is_drift() -> None:
    live = _live()
    live["spec"]["template"]["spec"]["containers"][0]["name"] = "renamed"
    assert "spec.template.spec.containers[0]" in differences(DEPLOY, live, kind="Deployment")


def test_exclusive_maps_must_not_hold_foreign_keys() -> None:
    desired = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "eA=="}}
    live = copy.deepcopy(desired)
    live["data"]["stale-channel"] = "eQ=="
    assert differences(desired, live, kind="Secret") == ["data.stale-channel"]
    assert foreign_keys(desired, live) == {"data": {"stale-channel": None}}
    empty = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {}}
    assert differences(empty, live, kind="Secret") == ["data.a", "data.stale-channel"]


def test_service_ports_by_port_and_int_or_string() -> None:
    desired = {"kind": "Service", "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    live = {"kind": "Service", "spec": {"clusterIP": "10.0.0.1", "ports": [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}
    assert differences(desired, live, kind="Service") == []
    live["spec"]["ports"][0]["targetPort"] = 8080
    assert differences(desired, live, kind="Service") == ["spec.ports[0].targetPort"]


def test_atomic_lists_compare_by_position_and_length() -> None:
    desired = {"kind": "Role", "rules": [{"verbs": ["get", "list"]}]}
    assert differences(desired, {"kind": "Role", "rules": [{"verbs": ["get", "list", "delete"]}]}, kind="Role")
    assert differences(desired, {"kind": "Role", "rules": [{"verbs": ["get", "list"]}, {"verbs": ["*"]}]},
                       kind="Role") == ["rules"]


def test_empty_desired_values_match_absent_live_ones() -> None:
    assert differences({"spec": {"x": {}, "y": []}}, {"spec": {}}) == []


def test_stale_own_annotations_are_drift_foreign_ones_are_not() -> None:
    desired = {"kind": "Secret", "metadata": {"name": "k-key", "annotations": {"newapi.openova.io/rotation": "1"}}}
    live = copy.deepcopy(desired)
    live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    assert differences(desired, live, kind="Secret") == []
    live["metadata"]["annotations"]["newapi.openova.io/previous-key-id"] = "key_1"
    assert differences(desired, live, kind="Secret") == ["metadata.annotations.newapi.openova.io/previous-key-id"]
    assert foreign_keys(desired, live) == {"metadata": {"annotations": {"newapi.openova.io/previous-key-id": None}}}
