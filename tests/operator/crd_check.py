"""Check objects against a CRD as a Kubernetes API server would, independently of the product code.

Defaults are applied from the schema, then the object is validated with ``jsonschema`` (unknown
fields rejected, as ``kubectl``'s default strict field validation does) and with the CRD's CEL
rules (``newapi_operator.celrules``). Errors come back as ``(field, message)`` with Kubernetes
field paths (``spec.tiers[free].modelDowngrades[gpt-4]``).

Loaded by path from the conftest files of tests/operator and tests/config.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonschema

from newapi_operator import celrules

Schema = Mapping[str, Any]


def apply_defaults(schema: Schema, value: Any) -> Any:
    """A copy of ``value`` with the schema's defaults filled in (recursively, as the API server)."""
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: Schema, value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in (schema.get("properties") or {}).items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default(sub, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key, sub_value in value.items():
                if key not in (schema.get("properties") or {}):
                    _default(extra, sub_value)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _default(schema["items"], item)


def to_json_schema(schema: Schema) -> dict[str, Any]:
    """The CRD schema as JSON Schema, rejecting unknown fields (strict field validation)."""
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        else:
            out[key] = copy.deepcopy(value)
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _k8s_path(schema: Schema, parts: list[Any]) -> str:
    path, node = "", schema
    for part in parts:
        props = node.get("properties") or {}
        if isinstance(part, int):
            path += f"[{part}]"
            node = node.get("items") or {}
        elif part in props:
            path = f"{path}.{part}" if path else str(part)
            node = props[part]
        else:
            path += f"[{part}]"
            node = node.get("additionalProperties") or {}
    return path


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def schema_errors(schema: Schema, obj: Any) -> list[tuple[str, str]]:
    """OpenAPI (structural) schema errors of ``obj`` as ``(field, message)``."""
    validator = jsonschema.Draft7Validator(to_json_schema(schema), format_checker=jsonschema.FormatChecker())
    out = []
    for err in validator.iter_errors(obj):
        field = _k8s_path(schema, list(err.absolute_path))
        if err.validator == "required" and isinstance(err.instance, Mapping):
            for name in err.validator_value:
                if name not in err.instance:
                    out.append((_join(field, name), "Required value"))
        elif err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            known = set(err.schema.get("properties") or {})
            for name in err.instance:
                if name not in known:
                    out.append((_join(field, name), 'unknown field "' + name + '"'))
        else:
            out.append((field, err.message))
    return sorted(set(out))


def crd_errors(crd: Schema, obj: Any) -> list[tuple[str, str]]:
    """Every error the API server would report for ``obj``: schema after defaulting, then CEL."""
    schema = celrules.crd_version_schema(crd)
    defaulted = apply_defaults(schema, obj)
    errors = schema_errors(schema, defaulted)
    errors += [(v.field, v.message) for v in celrules.validate(schema, defaulted)]
    return errors
