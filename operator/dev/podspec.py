"""A gateway Deployment's pod template, turned into a local process plan (pure, no I/O).

What a kubelet would do with the pod, as far as it makes sense on one machine:

* the command: the image's entrypoint is ``newapi``, run as ``<python> -m newapi_operator``
  (the interpreter running ``newapi dev``); ``command``/``args`` as rendered;
* ports: every ``containerPort`` gets a local port (the dev port map), and every argument that
  names a container port after a ``--...port`` flag is rewritten to it; the process listens on
  127.0.0.1 (``--host``), and talks to the local API server (``--kubeconfig``);
* volumes: each mount path becomes a directory under the pod's local directory; Secret and
  ConfigMap volumes are filled from the API (by the launcher), ``emptyDir`` volumes are plain
  directories **kept across runs** (the gateway's SQLite file lives in one, so dev state persists,
  unlike in a cluster where an emptyDir dies with its pod); arguments and ``workingDir`` under a
  mount path are rewritten;
* environment: ``value``, ``fieldRef`` (metadata.name/namespace/uid, labels, annotations),
  ``secretKeyRef``/``configMapKeyRef`` and ``envFrom`` resolved from the API (by the launcher,
  through :func:`resolve_env`);
* readiness: the ``httpGet`` readiness probe, on the mapped port.

Ignored (no meaning locally): image, resources, security contexts, affinity, liveness probes,
service accounts. One process per Deployment whatever ``spec.replicas`` says.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

#: Environment variables of ``newapi dev`` itself that must not leak into a "pod".
HOST_ONLY_ENV = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "NEWAPI_DATABASE_URL",
                 "NEWAPI_REDIS_URL", "SQL_DSN", "VALKEY_URL", "NEWAPI_ADMIN_TOKEN", "NEWAPI_STATE_DIR",
                 "POD_NAME", "POD_NAMESPACE", "POD_ID")


class PodPlanError(Exception):
    """The pod template cannot be run locally; the message says which field and why."""


@dataclass(frozen=True)
class VolumePlan:
    """A volume as a local directory: ``kind`` secret, configMap or emptyDir; ``source`` the object's name."""

    name: str
    kind: str
    source: str | None
    local_dir: Path
    items: tuple[tuple[str, str], ...] = ()  # (key, path) when the volume lists items
    optional: bool = False


@dataclass(frozen=True)
class ProbePlan:
    """An HTTP readiness probe on a local port."""

    path: str
    port: int
    period: float
    failure_threshold: int


@dataclass(frozen=True)
class PodPlan:
    """Everything needed to run the pod's main container locally."""

    namespace: str
    name: str
    template_hash: str
    argv: list[str]
    cwd: Path
    env: list[Obj]
    env_from: list[Obj]
    volumes: list[VolumePlan]
    readiness: ProbePlan | None
    ports: dict[str, int]  # port name (or number) -> local port
    warnings: list[str] = field(default_factory=list)


def template_hash(deployment: Obj) -> str:
    """A digest of the pod template: a change means a new "pod" (the process is restarted)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def main_container(deployment: Obj) -> Obj:
    containers = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    if not containers:
        raise PodPlanError("spec.template.spec.containers is empty")
    named = [c for c in containers if c.get("name") == "gateway"]
    result: Obj = named[0] if named else containers[0]
    return result


def container_ports(deployment: Obj) -> list[tuple[str, int]]:
    """``(name or number, containerPort)`` of the main container."""
    out = []
    for p in main_container(deployment).get("ports") or []:
        if isinstance(p.get("containerPort"), int):
            out.append((str(p.get("name") or p["containerPort"]), int(p["containerPort"])))
    return out


def _map_path(value: str, mounts: Mapping[str, Path]) -> str:
    for mount, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
        if value == mount:
            return str(local)
        if value.startswith(mount.rstrip("/") + "/"):
            return str(local / value[len(mount.rstrip("/")) + 1:])
    return value


def _rewrite_args(args: list[str], port_map: Mapping[int, int], mounts: Mapping[str, Path]) -> list[str]:
    out: list[str] = []
    previous = ""
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            out.append(f"{flag}={_rewrite_value(flag, value, port_map, mounts)}")
            previous = ""
            continue
        out.append(_rewrite_value(previous, arg, port_map, mounts) if previous else _map_path(arg, mounts))
        previous = arg if arg.startswith("--") else ""
    return out


def _rewrite_value(flag: str, value: str, port_map: Mapping[int, int], mounts: Mapping[str, Path]) -> str:
    if flag.endswith("port") and value.isdigit() and int(value) in port_map:
        return str(port_map[int(value)])
    return _map_path(value, mounts)


def _set_flag(argv: list[str], flag: str, value: str) -> None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            argv[i + 1] = value
            return
        if arg.startswith(flag + "="):
            argv[i] = f"{flag}={value}"
            return
    argv += [flag, value]


def plan_pod(
    deployment: Obj,
    *,
    python: str,
    pod_dir: Path,
    local_ports: Mapping[str, int],
    kubeconfig: Path,
    host: str = "127.0.0.1",
    extra_args: Mapping[str, str] | None = None,
) -> PodPlan:
    """The local plan of ``deployment``'s main container.

    ``local_ports`` maps each container port's name (or number) to a local port; ``extra_args``
    are flags set on the command line (``--database-url`` and ``--redis-url`` from ``newapi dev``).
    """
    meta = deployment.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
    pod_spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    container = main_container(deployment)
    warnings: list[str] = []

    # Volumes: every mount path -> a local directory.
    volumes: dict[str, VolumePlan] = {}
    for vol in pod_spec.get("volumes") or []:
        vname = str(vol.get("name"))
        local = pod_dir / "volumes" / vname
        if "secret" in vol:
            src = vol["secret"] or {}
            items = tuple((str(i["key"]), str(i.get("path") or i["key"])) for i in src.get("items") or [])
            volumes[vname] = VolumePlan(vname, "secret", src.get("secretName"), local, items, bool(src.get("optional")))
        elif "configMap" in vol:
            src = vol["configMap"] or {}
            items = tuple((str(i["key"]), str(i.get("path") or i["key"])) for i in src.get("items") or [])
            volumes[vname] = VolumePlan(vname, "configMap", src.get("name"), local, items, bool(src.get("optional")))
        else:
            if "emptyDir" not in vol:
                warnings.append(f"volume {vname}: only secret, configMap and emptyDir volumes are supported "
                                "locally; it is an empty directory")
            volumes[vname] = VolumePlan(vname, "emptyDir", None, local)
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        vol_plan = volumes.get(str(mount.get("name")))
        if vol_plan is None:
            raise PodPlanError(f"volumeMounts {mount.get('name')}: no such volume in spec.template.spec.volumes")
        local = vol_plan.local_dir / str(mount["subPath"]) if mount.get("subPath") else vol_plan.local_dir
        mounts[str(mount["mountPath"])] = local

    # Ports: container port number -> local port.
    port_map: dict[int, int] = {}
    by_name: dict[str, int] = {}
    for pname, number in container_ports(deployment):
        local_port = local_ports.get(pname)
        if local_port is None:
            raise PodPlanError(f"container port {pname} ({number}) has no local port in the dev port map")
        port_map[number] = local_port
        by_name[pname] = local_port
        by_name[str(number)] = local_port

    # Command line.
    command = [str(c) for c in container.get("command") or ["newapi"]]
    args = [str(a) for a in container.get("args") or []]
    if command[0] == "newapi" or command[0].endswith("/newapi"):
        command = [python, "-m", "newapi_operator", *command[1:]]
    argv = command + _rewrite_args(args, port_map, mounts)
    sub = argv[3] if len(argv) > 3 and argv[1:3] == ["-m", "newapi_operator"] else None
    if sub != "gateway":
        raise PodPlanError(f"the container runs {' '.join(command[3:] + args[:1]) or command[0]!r}; the local "
                           "launcher runs `newapi gateway` containers only")
    _set_flag(argv, "--host", host)
    if "--kube" in argv:
        _set_flag(argv, "--kubeconfig", str(kubeconfig))
    for flag, value in (extra_args or {}).items():
        _set_flag(argv, flag, value)

    working_dir = container.get("workingDir")
    cwd = Path(_map_path(str(working_dir), mounts)) if working_dir else pod_dir / "workdir"
    if working_dir and str(cwd) == str(working_dir):
        cwd = pod_dir / "workdir"
        warnings.append(f"workingDir {working_dir} is not under a volume mount; using {cwd}")

    readiness = None
    probe = container.get("readinessProbe") or {}
    http_get = probe.get("httpGet")
    if http_get:
        port = by_name.get(str(http_get.get("port")))
        if port is None:
            raise PodPlanError(f"readinessProbe.httpGet.port {http_get.get('port')!r} is not a container port")
        readiness = ProbePlan(str(http_get.get("path") or "/"), port, float(probe.get("periodSeconds") or 10),
                              int(probe.get("failureThreshold") or 3))
    return PodPlan(namespace, name, template_hash(deployment), argv, cwd, list(container.get("env") or []),
                   list(container.get("envFrom") or []), list(volumes.values()), readiness, by_name, warnings)


Lookup = Callable[[str, str], "dict[str, str] | None"]
"""``lookup(kind, name)``: the decoded data of a Secret or ConfigMap of the pod's namespace, None if missing."""


def decode_secret_data(obj: Obj | None) -> dict[str, str] | None:
    """A Secret's ``data`` decoded to text (undecodable values left out)."""
    if obj is None:
        return None
    out: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(str(value), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
    return out


def _field_ref(path: str, pod_meta: Mapping[str, Any]) -> str | None:
    if path in ("metadata.name", "metadata.namespace", "metadata.uid"):
        value = pod_meta.get(path.split(".", 1)[1])
        return None if value is None else str(value)
    for prefix, mapping in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((pod_meta.get(mapping) or {}).get(path[len(prefix) + 2:-2], ""))
    if path in ("spec.nodeName", "status.hostIP", "status.podIP"):
        return "127.0.0.1" if path != "spec.nodeName" else "localhost"
    return None


def resolve_env(
    env: list[Obj], env_from: list[Obj], pod_meta: Mapping[str, Any], lookup: Lookup
) -> tuple[dict[str, str], list[str]]:
    """The container's environment, and the problems that keep it from starting (missing references)."""
    out: dict[str, str] = {}
    problems: list[str] = []
    for source in env_from:
        prefix = str(source.get("prefix") or "")
        for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            ref = source.get(key)
            if ref:
                data = lookup(kind, str(ref.get("name")))
                if data is None:
                    if not ref.get("optional"):
                        problems.append(f"envFrom: {kind} {ref.get('name')} not found")
                    continue
                out.update({prefix + k: v for k, v in data.items()})
    for var in env:
        name = str(var.get("name"))
        if "value" in var:
            out[name] = str(var.get("value") or "")
            continue
        source = var.get("valueFrom") or {}
        if "fieldRef" in source:
            value = _field_ref(str(source["fieldRef"].get("fieldPath")), pod_meta)
            if value is None:
                problems.append(f"env {name}: fieldRef {source['fieldRef'].get('fieldPath')} is not supported locally")
            else:
                out[name] = value
            continue
        for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            ref = source.get(key)
            if ref:
                data = lookup(kind, str(ref.get("name")))
                value = None if data is None else data.get(str(ref.get("key")))
                if value is None:
                    if not ref.get("optional"):
                        problems.append(f"env {name}: {kind} {ref.get('name')} key {ref.get('key')} not found")
                else:
                    out[name] = value
                break
        else:
            if source:
                problems.append(f"env {name}: {', '.join(source)} is not supported locally")
    return out, problems


def volume_files(volume: VolumePlan, data: Mapping[str, str]) -> dict[str, str]:
    """``relative path -> content`` of a Secret or ConfigMap volume."""
    if volume.items:
        return {path: data[key] for key, path in volume.items if key in data}
    return dict(data)


def host_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``newapi dev``'s environment a local "pod" inherits (PATH, HOME, locale, ...)."""
    return {k: v for k, v in environ.items() if k not in HOST_ONLY_ENV and not k.startswith("KUBERNETES_")}


def pod_name(deployment_name: str, template: str) -> str:
    """A pod-like name: ``<deployment>-<hash>-dev``."""
    return f"{deployment_name}-{template[:10]}-dev"

