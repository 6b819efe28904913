"""Per-kind behaviour of the built-in kinds: the server-side defaults and rules clients rely on.

What is implemented (everything else of a built-in kind is stored as sent):

- Namespace: ``spec.finalizers: [kubernetes]``, ``status.phase: Active``, the
  ``kubernetes.io/metadata.name`` label.
- Secret: ``type`` defaults to ``Opaque``; ``stringData`` is merged into ``data`` (base64) and
  dropped; ``data`` values must be base64 (400, as a decoding error); keys must be valid config keys.
- ConfigMap: ``data`` values are strings, ``binaryData`` values base64, keys valid and not in both.
- Service: ``type: ClusterIP``, a ``clusterIP`` from 10.96.0.0/12, ``sessionAffinity: None``,
  port ``protocol: TCP`` and ``targetPort`` = ``port``; ``spec.ports[].port`` required.
- Deployment (apps/v1): the defaults a real server fills in (replicas, strategy,
  revisionHistoryLimit, progressDeadlineSeconds, pod template defaults, container
  ``imagePullPolicy``/``terminationMessage*``, port protocol) and the rules ``spec.selector``
  required and matching the template labels, containers with a name and an image.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import re
from typing import Any

from .errors import FieldError
from .resources import ResourceType

_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_cluster_ips = itertools.count(1)


def _is_kind(rtype: ResourceType, group: str, plural: str) -> bool:
    return rtype.group == group and rtype.plural == plural and not rtype.custom


def prepare_create(rtype: ResourceType, obj: dict[str, Any]) -> None:
    """Server-side defaults for a new object of a built-in kind (in place)."""
    if _is_kind(rtype, "", "namespaces"):
        name = obj["metadata"].get("name", "")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
    elif _is_kind(rtype, "", "services"):
        spec = obj.setdefault("spec", {})
        if spec.get("type", "ClusterIP") == "ClusterIP" and "clusterIP" not in spec:
            n = next(_cluster_ips)
            ip = f"10.96.{(n >> 8) & 0xFF}.{n & 0xFF or 1}"
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
    prepare(rtype, obj)


def prepare(rtype: ResourceType, obj: dict[str, Any]) -> None:
    """Server-side defaults applied on every write of a built-in kind (in place)."""
    if _is_kind(rtype, "", "secrets"):
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict) and string_data:
            data = obj.get("data")
            data = dict(data) if isinstance(data, dict) else {}
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = data
    elif _is_kind(rtype, "", "services"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
    elif _is_kind(rtype, "apps", "deployments"):
        _default_deployment(obj)


def _default_deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxSurge", "25%")
        rolling.setdefault("maxUnavailable", "25%")
    template = spec.setdefault("template", {})
    if not isinstance(template, dict):
        return
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    pod = template.setdefault("spec", {})
    if not isinstance(pod, dict):
        return
    pod.setdefault("restartPolicy", "Always")
    pod.setdefault("terminationGracePeriodSeconds", 30)
    pod.setdefault("dnsPolicy", "ClusterFirst")
    pod.setdefault("securityContext", {})
    pod.setdefault("schedulerName", "default-scheduler")
    if pod.get("serviceAccountName") and "serviceAccount" not in pod:
        pod["serviceAccount"] = pod["serviceAccountName"]
    for container in itertools.chain(pod.get("containers") or [], pod.get("initContainers") or []):
        if not isinstance(container, dict):
            continue
        image = str(container.get("image", ""))
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        latest = not tagged or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
        for env in container.get("env") or []:
            source = env.get("valueFrom") if isinstance(env, dict) else None
            if isinstance(source, dict) and isinstance(source.get("fieldRef"), dict):
                source["fieldRef"].setdefault("apiVersion", "v1")


def validate(rtype: ResourceType, obj: dict[str, Any]) -> list[FieldError]:
    """Kind-specific rules of the built-in kinds (see the module docstring)."""
    if _is_kind(rtype, "", "secrets"):
        return _data_errors(obj, "data")
    if _is_kind(rtype, "", "configmaps"):
        errors = _data_errors(obj, "data") + _data_errors(obj, "binaryData")
        both = set(obj.get("data") or {}) & set(obj.get("binaryData") or {})
        for key in sorted(both):
            errors.append(FieldError(
                "data", "FieldValueInvalid", f'Invalid value: "{key}": duplicate of key present in binaryData'
            ))
        return errors
    if _is_kind(rtype, "", "services"):
        errors = []
        for i, port in enumerate((obj.get("spec") or {}).get("ports") or []):
            if not isinstance(port, dict) or not isinstance(port.get("port"), int):
                errors.append(FieldError(f"spec.ports[{i}].port", "FieldValueRequired", "Required value"))
        return errors
    if _is_kind(rtype, "apps", "deployments"):
        return _deployment_errors(obj)
    return []


def _data_errors(obj: dict[str, Any], field: str) -> list[FieldError]:
    data = obj.get(field)
    if data is None:
        return []
    if not isinstance(data, dict):
        return [FieldError(field, "FieldValueTypeInvalid", "Invalid value: must be a map of strings")]
    errors = []
    for key, value in data.items():
        if not _CONFIG_KEY.fullmatch(key) or len(key) > 253:
            errors.append(FieldError(
                f"{field}[{key}]", "FieldValueInvalid",
                f"Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', "
                "'_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                "'[-._a-zA-Z0-9]+')",
            ))
        if not isinstance(value, str):
            errors.append(FieldError(f"{field}[{key}]", "FieldValueTypeInvalid", "Invalid value: must be a string"))
    return errors


def decode_error(rtype: ResourceType, obj: dict[str, Any]) -> str | None:
    """Why a body cannot be decoded into a built-in kind (a real server answers 400), or None.

    Secret ``data`` and ConfigMap ``binaryData`` values are bytes on the wire: base64.
    """
    fields = {("", "secrets"): "data", ("", "configmaps"): "binaryData"}
    field = fields.get((rtype.group, rtype.plural)) if not rtype.custom else None
    values = obj.get(field) if field else None
    if not isinstance(values, dict):
        return None
    for key, value in values.items():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            return (
                f'{rtype.kind} in version "{rtype.version}" cannot be handled as a {rtype.kind}: illegal base64 '
                f"data in {field}[{key}] ({field} values are base64; put plain text in stringData)"
            )
    return None


def _deployment_errors(obj: dict[str, Any]) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("spec", "FieldValueRequired", "Required value")]
    errors: list[FieldError] = []
    selector = spec.get("selector")
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errors.append(FieldError("spec.selector", "FieldValueRequired", "Required value"))
    else:
        wanted = selector.get("matchLabels") or {}
        if any(template_labels.get(k) != v for k, v in wanted.items()):
            errors.append(FieldError(
                "spec.template.metadata.labels", "FieldValueInvalid",
                f"Invalid value: {template_labels!r}: `selector` does not match template `labels`",
            ))
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
    if not containers:
        errors.append(FieldError("spec.template.spec.containers", "FieldValueRequired", "Required value"))
    else:
        for i, container in enumerate(containers):
            for key in ("name", "image"):
                if not isinstance(container, dict) or not container.get(key):
                    errors.append(FieldError(f"spec.template.spec.containers[{i}].{key}", "FieldValueRequired",
                                             "Required value"))
    return errors


def validate_update(rtype: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> list[FieldError]:
    """Update-only rules of built-in kinds: immutable Deployment selector, immutable Secret data."""
    if _is_kind(rtype, "apps", "deployments"):
        before = (old.get("spec") or {}).get("selector")
        after = (new.get("spec") or {}).get("selector")
        if before != after:
            return [FieldError("spec.selector", "FieldValueInvalid",
                               f"Invalid value: {after!r}: field is immutable")]
    if (_is_kind(rtype, "", "secrets") or _is_kind(rtype, "", "configmaps")) and old.get("immutable"):
        for field in ("data", "binaryData"):
            if old.get(field) != new.get(field):
                return [FieldError(field, "FieldValueForbidden",
                                   "Forbidden: field is immutable when `immutable` is set")]
    return []


def generation_view(rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """The part of an object whose change bumps ``metadata.generation``.

    Everything but ``metadata`` (and ``status`` when it is a subresource), as Kubernetes does
    for custom resources and for built-in kinds with a spec/status split.
    """
    view = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    if rtype.has_status:
        view.pop("status", None)
    return view


def deep_copy(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)
