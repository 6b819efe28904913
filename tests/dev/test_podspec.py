"""A gateway Deployment's pod template as a local process plan (pure)."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest

from newapi_operator.dev.podspec import (
    PodPlanError,
    decode_secret_data,
    host_environment,
    plan_pod,
    resolve_env,
    template_hash,
    volume_files,
)

from .objects import gateway_deployment

PY = "/opt/py/bin/python3"
PORTS = {"http": 18080, "admin": 18081}


def plan(deployment: dict[str, Any], tmp_path: Path, **kw: Any) -> Any:
    return plan_pod(deployment, python=PY, pod_dir=tmp_path / "pod", local_ports=PORTS,
                    kubeconfig=tmp_path / "kubeconfig", **kw)


def test_the_gateway_runs_as_the_rendered_command_on_local_ports_and_paths(tmp_path: Path) -> None:
    p = plan(gateway_deployment(), tmp_path, extra_args={"--database-url": "postgresql://x/y"})
    pod = tmp_path / "pod" / "volumes"
    assert p.argv == [
        PY, "-m", "newapi_operator", "gateway", "--kube", "--namespace", "default", "--instance", "newapi",
        "--port", "18080", "--admin-port", "18081", "--admin-token-file", str(pod / "admin-token" / "token"),
        "--log-format", "json", "--host", "127.0.0.1", "--kubeconfig", str(tmp_path / "kubeconfig"),
        "--database-url", "postgresql://x/y",
    ]
    assert p.cwd == pod / "state"
    assert p.readiness is not None
    assert (p.readiness.path, p.readiness.port) == ("/readyz", 18080)
    assert p.ports == {"http": 18080, "admin": 18081, "8080": 18080, "8081": 18081}
    assert [(v.name, v.kind, v.source) for v in p.volumes] == [
        ("admin-token", "secret", "newapi-admin"), ("state", "emptyDir", None), ("tmp", "emptyDir", None)]
    assert p.warnings == []


def test_flag_equals_forms_explicit_host_and_command_are_rewritten(tmp_path: Path) -> None:
    d = gateway_deployment()
    c = d["spec"]["template"]["spec"]["containers"][0]
    c["command"] = ["/opt/newapi/bin/newapi"]
    c["args"] = ["gateway", "--port=8080", "--host", "0.0.0.0", "--admin-token-file=/var/run/newapi/admin/token",
                 "--routes", "/var/lib/newapi/routes.json", "--reload-interval", "8080"]
    p = plan(d, tmp_path)
    pod = tmp_path / "pod" / "volumes"
    assert p.argv == [PY, "-m", "newapi_operator", "gateway", "--port=18080", "--host", "127.0.0.1",
                      f"--admin-token-file={pod / 'admin-token' / 'token'}", "--routes",
                      str(pod / "state" / "routes.json"), "--reload-interval", "8080"]


def test_the_template_hash_follows_the_pod_template_only() -> None:
    a = gateway_deployment()
    b = copy.deepcopy(a)
    b["metadata"]["generation"] = 9
    b["spec"]["replicas"] = 3
    b["status"] = {"readyReplicas": 1}
    assert template_hash(a) == template_hash(b)
    b["spec"]["template"]["spec"]["containers"][0]["args"].append("--log-level=debug")
    assert template_hash(a) != template_hash(b)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda c: c.update(args=["operator"]), "runs `newapi gateway` containers only"),
        (lambda c: c.update(command=["python", "-m", "x"]), "runs `newapi gateway` containers only"),
        (lambda c: c["volumeMounts"].append({"name": "nope", "mountPath": "/x"}), "volumeMounts nope"),
        (lambda c: c["ports"].append({"name": "metrics", "containerPort": 9090}), "container port metrics"),
        (lambda c: c["readinessProbe"]["httpGet"].update(port="other"), "readinessProbe.httpGet.port"),
    ],
)
def test_unrunnable_templates_say_why(tmp_path: Path, mutate: Any, needle: str) -> None:
    d = gateway_deployment()
    mutate(d["spec"]["template"]["spec"]["containers"][0])
    with pytest.raises(PodPlanError, match=needle.replace("`", ".").replace("(", ".").replace(")", ".")):
        plan(d, tmp_path)


def test_unsupported_volumes_become_directories_with_a_warning(tmp_path: Path) -> None:
    d = gateway_deployment()
    d["spec"]["template"]["spec"]["volumes"].append({"name": "proj", "projected": {"sources": []}})
    p = plan(d, tmp_path)
    assert p.volumes[-1].kind == "emptyDir"
    assert p.warnings == ["volume proj: only secret, configMap and emptyDir volumes are supported locally; "
                          "it is an empty directory"]


def test_environment_is_resolved_from_the_api() -> None:
    d = gateway_deployment()
    env = d["spec"]["template"]["spec"]["containers"][0]["env"]
    meta = {"name": "newapi-abc-dev", "namespace": "default", "uid": "u1", "labels": {"app": "gw"}}
    objects = {("Secret", "db"): {"SQL_DSN": "postgresql://db/x"}}
    values, problems = resolve_env(env, [], meta, lambda kind, name: objects.get((kind, name)))
    assert problems == []
    assert values == {"POD_NAMESPACE": "default", "POD_NAME": "newapi-abc-dev", "SQL_DSN": "postgresql://db/x",
                      "VALKEY_URL": "redis://valkey:6379/0"}


def test_missing_references_keep_the_pod_waiting_unless_optional() -> None:
    env = [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}},
           {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}}},
           {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
           {"name": "D", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]
    env_from = [{"configMapRef": {"name": "cm"}, "prefix": "X_"}, {"secretRef": {"name": "missing"}}]
    values, problems = resolve_env(env, env_from, {"labels": {"app": "gw"}},
                                   lambda kind, name: {"one": "1"} if (kind, name) == ("ConfigMap", "cm") else None)
    assert values == {"X_one": "1", "C": "gw"}
    assert problems == ["envFrom: Secret missing not found", "env A: Secret gone key k not found",
                        "env D: resourceFieldRef is not supported locally"]


def test_secret_data_and_volume_items() -> None:
    secret = {"data": {"token": base64.b64encode(b"t0k").decode(), "bad": "!!!"}}
    assert decode_secret_data(secret) == {"token": "t0k"}
    assert decode_secret_data(None) is None
    p = plan_pod(gateway_deployment(), python=PY, pod_dir=Path("/p"), local_ports=PORTS, kubeconfig=Path("/k"))
    vol = p.volumes[0]
    assert volume_files(vol, {"token": "t0k"}) == {"token": "t0k"}
    items_vol = type(vol)(vol.name, vol.kind, vol.source, vol.local_dir, (("token", "sub/t"),))
    assert volume_files(items_vol, {"token": "t0k", "other": "x"}) == {"sub/t": "t0k"}


def test_the_host_environment_does_not_leak_cluster_settings() -> None:
    env = host_environment({"PATH": "/bin", "HOME": "/root", "KUBECONFIG": "/k", "SQL_DSN": "x",
                            "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_PORT": "tcp://x", "LANG": "C"})
    assert env == {"PATH": "/bin", "HOME": "/root", "LANG": "C"}


def test_the_operators_real_deployment_is_runnable(tmp_path: Path) -> None:
    """The Deployment the operator's renderer produces plans without warnings (drift check)."""
    from newapi_operator.api.v1alpha1 import NewAPIInstanceSpec
    from newapi_operator.controller.children import Owner, RenderInput, deployment

    spec = NewAPIInstanceSpec.model_validate({"replicas": 1})
    rendered = deployment(RenderInput(Owner("newapi", "default", "uid-1"), spec, {}, {}, {}, "token", "img"))
    p = plan(rendered, tmp_path)
    assert p.argv[3:5] == ["gateway", "--kube"]
    assert "--kubeconfig" in p.argv
    assert "--host" in p.argv
    assert p.readiness is not None
    assert p.readiness.port == 18080
    assert p.warnings == []
    for arg in p.argv:
        assert not arg.startswith("/var/"), f"{arg} was not mapped to a local directory"
