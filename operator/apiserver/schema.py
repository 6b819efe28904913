"""Structural schema handling for custom resources: pruning, defaulting, validation.

Follows the CRD documentation (apiextensions.k8s.io/v1): unknown fields are pruned unless
``x-kubernetes-preserve-unknown-fields``; ``null`` on a non-nullable field is dropped before
defaulting; defaults fill absent fields (recursively into defaulted objects); then the value is
validated: ``type``, ``required``, ``enum``, ``minimum``/``maximum`` (and exclusive),
``multipleOf``, ``minLength``/``maxLength``, ``pattern``, ``format`` (date-time, date, byte,
uuid, int32, int64), ``minItems``/``maxItems``, ``uniqueItems``, ``minProperties``/
``maxProperties``, ``x-kubernetes-list-type`` (set/map uniqueness), ``allOf``/``anyOf``/
``oneOf``/``not``, ``x-kubernetes-int-or-string`` and ``x-kubernetes-embedded-resource``.
The root's ``apiVersion``, ``kind`` and ``metadata`` are kept and validated by the server.
CEL rules (``x-kubernetes-validations``) are evaluated separately (see ``cel.py``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import json
import math
import re
import uuid
from collections.abc import Iterator
from typing import Any

from .errors import FieldError

Schema = dict[str, Any]

ROOT_META_FIELDS = ("apiVersion", "kind", "metadata")
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
})


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _preserves(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields")) or bool(
        schema.get("x-kubernetes-embedded-resource") and not schema.get("properties")
    )


# ---------------------------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------------------------


def prune(obj: dict[str, Any], schema: Schema) -> tuple[dict[str, Any], list[str]]:
    """Drop unknown fields (and nulls of non-nullable fields); returns the pruned paths."""
    pruned: list[str] = []
    result = _prune(obj, schema, "", pruned, root=True)
    assert isinstance(result, dict)
    return result, pruned


def _prune(value: Any, schema: Schema, path: str, pruned: list[str], *, root: bool = False) -> Any:
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = _preserves(schema)
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub_path = _join(path, key)
            if (root and key in ROOT_META_FIELDS) or (embedded and key in ("apiVersion", "kind")):
                out[key] = _prune_metadata(item) if key == "metadata" else item
                continue
            if embedded and key == "metadata":
                out[key] = _prune_metadata(item)
                continue
            sub: Schema | None = props.get(key)
            if sub is None and isinstance(additional, dict):
                sub, sub_path = additional, f"{path}[{key}]"
            if sub is None:
                if preserve or additional is True:
                    out[key] = item
                else:
                    pruned.append(sub_path)
                continue
            if item is None and not sub.get("nullable"):
                continue  # null of a non-nullable field is dropped (then defaulted)
            out[key] = _prune(item, sub, sub_path, pruned)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_prune(v, items, f"{path}[{i}]", pruned) for i, v in enumerate(value)]
        return value
    return value


def _prune_metadata(meta: Any) -> Any:
    if not isinstance(meta, dict):
        return meta
    return {k: v for k, v in meta.items() if k in OBJECT_META_FIELDS}


# ---------------------------------------------------------------------------------------------
# Defaulting
# ---------------------------------------------------------------------------------------------


def apply_defaults(obj: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """Fill absent fields with their schema defaults (a new object; the input is not changed)."""
    result = _default(copy.deepcopy(obj), schema)
    assert isinstance(result, dict)
    return result


def _default(value: Any, schema: Schema) -> Any:
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _default(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in list(value):
                if key not in props:
                    value[key] = _default(value[key], additional)
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_default(v, items) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def validate(obj: dict[str, Any], schema: Schema) -> list[FieldError]:
    """Schema violations of a (pruned, defaulted) object, as ``FieldError`` with Kubernetes wording."""
    errors: list[FieldError] = []
    body = {k: v for k, v in obj.items() if k not in ROOT_META_FIELDS}
    root_schema = dict(schema)
    root_schema.pop("type", None)
    _validate(body, root_schema, "", errors)
    return errors


def _q(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return f'"{_type_of(value)}"'
    return json.dumps(value)


def _invalid(errors: list[FieldError], path: str, value: Any, message: str) -> None:
    errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_q(value)}: {message}"))


def _type_ok(value: Any, want: str, schema: Schema) -> bool:
    have = _type_of(value)
    if schema.get("x-kubernetes-int-or-string"):
        return have in ("integer", "string")
    if want == "number":
        return have in ("integer", "number")
    if want == "integer" and have == "number":
        return math.isfinite(value) and float(value).is_integer()
    return have == want


def _validate(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    shown = path or "<root>"
    want = schema.get("type")
    if value is None:
        if schema.get("nullable") or not want:
            return
        errors.append(FieldError(
            shown, "FieldValueTypeInvalid", f'Invalid value: "null": {shown} in body must be of type {want}: "null"'
        ))
        return
    if schema.get("x-kubernetes-int-or-string"):
        want = "integer,string"
    if want and not _type_ok(value, want, schema):
        have = _type_of(value)
        errors.append(FieldError(
            shown, "FieldValueTypeInvalid",
            f'Invalid value: "{have}": {shown} in body must be of type {want}: "{have}"',
        ))
        return

    enum = schema.get("enum")
    if enum is not None and value not in enum:
        supported = ", ".join(_q(v) for v in enum)
        errors.append(FieldError(shown, "FieldValueNotSupported",
                                 f"Unsupported value: {_q(value)}: supported values: {supported}"))

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _validate_number(value, schema, shown, errors)
    elif isinstance(value, str):
        _validate_string(value, schema, shown, errors)
    elif isinstance(value, list):
        _validate_array(value, schema, path, shown, errors)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, shown, errors)

    for sub in schema.get("allOf") or []:
        _validate(value, sub, path, errors)
    any_of = schema.get("anyOf")
    if any_of and not any(not _collect(value, s, path) for s in any_of):
        _invalid(errors, shown, value, f"{shown} in body must match at least one schema in anyOf")
    one_of = schema.get("oneOf")
    if one_of and sum(1 for s in one_of if not _collect(value, s, path)) != 1:
        _invalid(errors, shown, value, f"{shown} in body must match exactly one schema in oneOf")
    negated = schema.get("not")
    if isinstance(negated, dict) and not _collect(value, negated, path):
        _invalid(errors, shown, value, f"{shown} in body should not match the schema in not")


def _collect(value: Any, schema: Schema, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    _validate(value, schema, path, errors)
    return errors


def _validate_number(value: float, schema: Schema, shown: str, errors: list[FieldError]) -> None:
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    if minimum is not None:
        if schema.get("exclusiveMinimum") and not value > minimum:
            _invalid(errors, shown, value, f"{shown} in body should be greater than {minimum}")
        elif value < minimum:
            _invalid(errors, shown, value, f"{shown} in body should be greater than or equal to {minimum}")
    if maximum is not None:
        if schema.get("exclusiveMaximum") and not value < maximum:
            _invalid(errors, shown, value, f"{shown} in body should be less than {maximum}")
        elif value > maximum:
            _invalid(errors, shown, value, f"{shown} in body should be less than or equal to {maximum}")
    multiple = schema.get("multipleOf")
    if multiple and (value / multiple) != int(value / multiple):
        _invalid(errors, shown, value, f"{shown} in body should be a multiple of {multiple}")
    fmt = schema.get("format")
    if fmt == "int32" and isinstance(value, int) and not -(2**31) <= value < 2**31:
        _invalid(errors, shown, value, f"{shown} in body must be of type int32")
    if fmt == "int64" and isinstance(value, int) and not -(2**63) <= value < 2**63:
        _invalid(errors, shown, value, f"{shown} in body must be of type int64")


def _validate_string(value: str, schema: Schema, shown: str, errors: list[FieldError]) -> None:
    max_length, min_length = schema.get("maxLength"), schema.get("minLength")
    if max_length is not None and len(value) > max_length:
        errors.append(FieldError(shown, "FieldValueTooLong", f"Too long: may not be more than {max_length} bytes"))
    if min_length is not None and len(value) < min_length:
        _invalid(errors, shown, value, f"{shown} in body should be at least {min_length} chars long")
    pattern = schema.get("pattern")
    if pattern is not None and not re.search(pattern, value):
        _invalid(errors, shown, value, f"{shown} in body should match '{pattern}'")
    fmt = schema.get("format")
    if fmt and not _format_ok(fmt, value):
        _invalid(errors, shown, value, f"{shown} in body must be of type {fmt}: {_q(value)}")


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt == "date-time":
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            return "T" in value.upper() or " " in value
        if fmt == "date":
            datetime.date.fromisoformat(value)
            return True
        if fmt == "byte":
            base64.b64decode(value, validate=True)
            return True
        if fmt == "uuid":
            uuid.UUID(value)
            return True
    except (ValueError, binascii.Error):
        return False
    return True


def _validate_array(value: list[Any], schema: Schema, path: str, shown: str, errors: list[FieldError]) -> None:
    max_items, min_items = schema.get("maxItems"), schema.get("minItems")
    if max_items is not None and len(value) > max_items:
        errors.append(FieldError(shown, "FieldValueTooMany",
                                 f"Too many: {len(value)}: must have at most {max_items} items"))
    if min_items is not None and len(value) < min_items:
        _invalid(errors, shown, len(value), f"{shown} in body should have at least {min_items} items")
    list_type = schema.get("x-kubernetes-list-type")
    if schema.get("uniqueItems") or list_type == "set":
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                errors.append(FieldError(f"{path}[{i}]", "FieldValueDuplicate", f"Duplicate value: {_q(item)}"))
            seen.append(item)
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: set[str] = set()
        for i, item in enumerate(value):
            if isinstance(item, dict):
                ident = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
                if ident in seen_keys:
                    errors.append(FieldError(f"{path}[{i}]", "FieldValueDuplicate", f"Duplicate value: {ident}"))
                seen_keys.add(ident)
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            _validate(item, items, f"{path}[{i}]", errors)


def _validate_object(
    value: dict[str, Any], schema: Schema, path: str, shown: str, errors: list[FieldError]
) -> None:
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(FieldError(_join(path, key), "FieldValueRequired", "Required value"))
    max_props, min_props = schema.get("maxProperties"), schema.get("minProperties")
    if max_props is not None and len(value) > max_props:
        errors.append(FieldError(shown, "FieldValueTooMany",
                                 f"Too many: {len(value)}: must have at most {max_props} items"))
    if min_props is not None and len(value) < min_props:
        _invalid(errors, shown, len(value), f"{shown} in body should have at least {min_props} properties")
    props: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if key in props:
            _validate(item, props[key], _join(path, key), errors)
        elif isinstance(additional, dict):
            _validate(item, additional, f"{path}[{key}]", errors)  # map keys: Kubernetes' [key] syntax
    if schema.get("x-kubernetes-embedded-resource"):
        for key in ("apiVersion", "kind"):
            if not value.get(key):
                errors.append(FieldError(_join(path, key), "FieldValueRequired", "Required value: must not be empty"))


def iter_schemas(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every (path, sub-schema) of a schema; array items as ``path[*]``, map values as ``path[*]``."""
    yield path, schema
    for key, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            yield from iter_schemas(sub, _join(path, key))
    items = schema.get("items")
    if isinstance(items, dict):
        yield from iter_schemas(items, f"{path}[*]")
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        yield from iter_schemas(additional, f"{path}[*]")
