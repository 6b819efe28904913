"""CRD ``x-kubernetes-validations`` (CEL) for the local API server, via :mod:`newapi_operator.celrules`.

The same evaluator the CRD tests use; violations become 422 ``FieldError`` entries worded as a
real server words them (``spec: Invalid value: "object": <message>``).
"""

from __future__ import annotations

import re
from typing import Any

from .. import celrules
from .errors import FieldError
from .resources import ResourceType

_PATH_PART = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")

_DETAIL_PREFIX = {
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
}


def _type_at(obj: Any, path: str) -> str:
    node = obj
    for match in _PATH_PART.finditer(path):
        key = match.group(1) if match.group(1) is not None else match.group(2)
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return "object"
    if isinstance(node, bool):
        return "boolean"
    if isinstance(node, int):
        return "integer"
    if isinstance(node, float):
        return "number"
    if isinstance(node, str):
        return "string"
    if isinstance(node, list):
        return "array"
    return "object"


def validate_rules(rtype: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    """The CEL violations of a custom resource (``old`` given on update, for transition rules)."""
    if rtype.schema is None:
        return []
    out: list[FieldError] = []
    for violation in celrules.validate(rtype.schema, obj, old=old):
        prefix = _DETAIL_PREFIX.get(violation.reason)
        if prefix is None:
            detail = f'Invalid value: "{_type_at(obj, violation.field)}": {violation.message}'
        else:
            detail = f"{prefix}: {violation.message}"
        out.append(FieldError(violation.field, violation.reason, detail))
    return out


def crd_rule_errors(crd: dict[str, Any]) -> list[FieldError]:
    """Rules of a CRD that do not compile (a real server rejects such a CRD with 422)."""
    out: list[FieldError] = []
    for i, version in enumerate((crd.get("spec") or {}).get("versions") or []):
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            continue
        for problem in celrules.compile_errors(schema):
            out.append(FieldError(
                f"spec.versions[{i}].schema.openAPIV3Schema", "FieldValueInvalid",
                f"Invalid value: \"object\": compilation failed: {problem}",
            ))
    return out
