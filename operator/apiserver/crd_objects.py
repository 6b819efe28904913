"""CustomResourceDefinition objects: what the server sets on them and the checks it makes."""

from __future__ import annotations

import datetime
from typing import Any

from .errors import FieldError

Obj = dict[str, Any]

#: The finalizer a CRD carries until all its custom resources are gone.
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")




def prepare_crd(obj: Obj) -> None:
    """Server-set parts of a new CRD: its cleanup finalizer and an Established status."""
    spec = obj.get("spec") or {}
    names = dict(spec.get("names") or {})
    if names.get("kind"):
        names.setdefault("singular", str(names["kind"]).lower())
        names.setdefault("listKind", f"{names['kind']}List")
    obj.setdefault("metadata", {}).setdefault("finalizers", [])
    if CRD_CLEANUP not in obj["metadata"]["finalizers"]:
        obj["metadata"]["finalizers"].append(CRD_CLEANUP)
    stamp = now()
    obj["status"] = {
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": stamp},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": stamp},
        ],
        "storedVersions": [v.get("name") for v in spec.get("versions") or [] if v.get("storage")],
    }


def crd_errors(crd: Obj) -> list[FieldError]:
    """The checks a real server makes on a CRD that matter for serving it."""
    errors: list[FieldError] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [FieldError("spec", "FieldValueRequired", "Required value")]
    group = spec.get("group") or ""
    names = spec.get("names") or {}
    plural, kind = names.get("plural") or "", names.get("kind") or ""
    if not group:
        errors.append(FieldError("spec.group", "FieldValueRequired", "Required value"))
    if not plural:
        errors.append(FieldError("spec.names.plural", "FieldValueRequired", "Required value"))
    if not kind:
        errors.append(FieldError("spec.names.kind", "FieldValueRequired", "Required value"))
    name = (crd.get("metadata") or {}).get("name")
    if group and plural and name != f"{plural}.{group}":
        errors.append(FieldError("metadata.name", "FieldValueInvalid",
                                 f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errors.append(FieldError(
            "spec.scope", "FieldValueNotSupported",
            f'Unsupported value: "{spec.get("scope")}": supported values: "Cluster", "Namespaced"',
        ))
    versions = spec.get("versions") or []
    if not versions:
        errors.append(FieldError("spec.versions", "FieldValueInvalid",
                                 "Invalid value: must have at least one version"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(FieldError("spec.versions", "FieldValueInvalid",
                                 "Invalid value: must have exactly one version marked as storage version"))
    for i, version in enumerate(versions):
        if not ((version.get("schema") or {}).get("openAPIV3Schema")):
            errors.append(FieldError(f"spec.versions[{i}].schema.openAPIV3Schema", "FieldValueRequired",
                                     "Required value: schemas are required"))
    return errors
