"""Evaluate a CRD's ``x-kubernetes-validations`` (CEL) on an object, as the API server does.

Used by the local API server (to answer 422) and by the tests. The walk follows Kubernetes:

* every schema node carrying rules is evaluated with ``self`` bound to the object's value at that
  node, after pruning unknown fields (a rule never sees fields the schema does not declare);
* nodes whose value is absent (or of the wrong JSON type: schema validation reports that) are
  not evaluated;
* strings with ``format: date-time`` are CEL timestamps;
* transition rules (those naming ``oldSelf``) are evaluated only when an old object is given and
  the old value at that node exists (correlated through properties, map keys and map-lists);
* the violation's field is the node's path plus the rule's ``fieldPath``; the message is the
  rule's ``messageExpression`` (if it yields a non-empty string), else ``message``, else
  ``failed rule: <rule>``.

Only CEL functions that both Kubernetes and cel-python support may be used in rules: ``has``,
``size``, ``in``, ``matches`` (RE2), ``startsWith``/``endsWith``/``contains``, ``all``/``exists``/
``exists_one``/``map``/``filter`` and ``string()``/``int()`` conversions. Kubernetes' extension
libraries (``lowerAscii``, ``trim``, ``join``, ``split``, ``quantity``, ``url``, …) are not
available here and :func:`compile_errors` reports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel

__all__ = [
    "CelRuleError",
    "CelViolation",
    "compile_errors",
    "compile_rule",
    "crd_version_schema",
    "validate",
    "validate_crd",
]

_ENV = celpy.Environment()
_OLD_SELF = re.compile(r"\boldSelf\b")
_STRING_LITERAL = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")
_FIELD_PATH_PART = re.compile(r"\.([A-Za-z_$][\w$-]*)|\['((?:[^'\\]|\\.)*)'\]")
#: Functions of Kubernetes' CEL extension libraries that cel-python lacks.
_UNSUPPORTED = re.compile(
    r"\.(lowerAscii|upperAscii|trim|join|split|replace|substring|charAt|indexOf|lastIndexOf|"
    r"isSorted|sum|min|max|reverse|format|quote)\s*\(|\b(url|quantity|isURL|isQuantity|ip|cidr|"
    r"isIP|isCIDR|semver|isSemver)\s*\("
)


class CelRuleError(ValueError):
    """A rule that does not compile (or uses a function this evaluator does not provide)."""


@dataclass(frozen=True)
class CelViolation:
    """One failed rule: the field (Kubernetes path syntax), the message and the rule itself."""

    field: str
    message: str
    rule: str
    reason: str = "FieldValueInvalid"

    def __str__(self) -> str:
        return f"{self.field or '<root>'}: {self.message}"


@lru_cache(maxsize=2048)
def compile_rule(expression: str) -> celpy.Runner:
    """Compile one CEL expression once (cached); raise :class:`CelRuleError` if it cannot be used."""
    unsupported = _UNSUPPORTED.search(_STRING_LITERAL.sub("''", expression))
    if unsupported:
        name = unsupported.group(1) or unsupported.group(2)
        raise CelRuleError(f"CEL function {name!r} is not supported by this evaluator: {expression}")
    try:
        return _ENV.program(_ENV.compile(expression))
    except Exception as err:  # celpy raises parse errors of several kinds
        raise CelRuleError(f"invalid CEL expression {expression!r}: {err}") from err


def _rules(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rules = node.get("x-kubernetes-validations") or []
    return [r for r in rules if isinstance(r, Mapping)]


def _walk_schema(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk_schema(sub, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), Mapping):
        yield from _walk_schema(node["items"], f"{path}[*]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from _walk_schema(node["additionalProperties"], f"{path}[*]")


def compile_errors(schema: Mapping[str, Any]) -> list[str]:
    """Every rule of a schema that does not compile, as ``<path>: <error>`` (empty = all good)."""
    errors = []
    for path, node in _walk_schema(schema, ""):
        for rule in _rules(node):
            for key in ("rule", "messageExpression"):
                expr = rule.get(key)
                if expr is None:
                    continue
                try:
                    compile_rule(str(expr))
                except CelRuleError as err:
                    errors.append(f"{path or '<root>'}: {key}: {err}")
    return errors


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

_MISSING: Any = object()


def _matches_type(node: Mapping[str, Any], value: Any) -> bool:
    if node.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    want = node.get("type")
    if want == "object":
        return isinstance(value, Mapping)
    if want == "array":
        return isinstance(value, list | tuple)
    if want == "string":
        return isinstance(value, str) or (node.get("format") == "date-time" and isinstance(value, datetime))
    if want == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if want == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if want == "boolean":
        return isinstance(value, bool)
    return True


def _to_cel(node: Mapping[str, Any], value: Any) -> Any:
    """The CEL value of ``value`` under ``node``: pruned to the schema, timestamps typed."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        keep_unknown = bool(node.get("x-kubernetes-preserve-unknown-fields"))
        out: dict[Any, Any] = {}
        for key, sub in value.items():
            if isinstance(props, Mapping) and key in props:
                out[celtypes.StringType(key)] = _to_cel(props[key], sub)
            elif isinstance(extra, Mapping):
                out[celtypes.StringType(key)] = _to_cel(extra, sub)
            elif keep_unknown or (props is None and extra is None and node.get("type") != "object"):
                out[celtypes.StringType(key)] = json_to_cel(sub)
        return celtypes.MapType(out)
    if isinstance(value, list | tuple):
        items = node.get("items")
        sub_node = items if isinstance(items, Mapping) else {}
        return celtypes.ListType([_to_cel(sub_node, v) for v in value])
    if node.get("format") == "date-time" and isinstance(value, str | datetime):
        try:
            return celtypes.TimestampType(value)
        except (ValueError, TypeError):
            return celtypes.StringType(str(value))
    if isinstance(value, datetime):
        return celtypes.StringType(value.isoformat())
    return json_to_cel(value)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _field_path(path: str, field_path: str | None) -> str:
    if not field_path:
        return path
    out, pos = path, 0
    for match in _FIELD_PATH_PART.finditer(field_path):
        if match.start() != pos:
            return _join(path, field_path.lstrip("."))
        pos = match.end()
        out = _join(out, match.group(1) if match.group(1) is not None else match.group(2))
    return out if pos == len(field_path) else _join(path, field_path.lstrip("."))


def _evaluate(expression: str, activation: dict[str, Any]) -> Any:
    try:
        return compile_rule(expression).evaluate(activation)
    except CelRuleError:
        raise
    except Exception as err:  # CELEvalError and friends: reported as a violation
        return err


def _check_node(
    node: Mapping[str, Any], value: Any, old: Any, path: str, out: list[CelViolation]
) -> None:
    rules = _rules(node)
    if not rules:
        return
    self_value = _to_cel(node, value)
    old_value = _to_cel(node, old) if old is not _MISSING and old is not None else _MISSING
    for rule in rules:
        expression = str(rule.get("rule", ""))
        activation: dict[str, Any] = {"self": self_value}
        if _OLD_SELF.search(expression):
            if old_value is _MISSING:
                continue  # a transition rule: only checked on update, when the old value exists
            activation["oldSelf"] = old_value
        field = _field_path(path, rule.get("fieldPath"))
        reason = str(rule.get("reason") or "FieldValueInvalid")
        result = _evaluate(expression, activation)
        if isinstance(result, celtypes.BoolType | bool):
            if bool(result):
                continue
            out.append(CelViolation(field, _message(rule, activation), expression, reason))
        else:
            out.append(CelViolation(field, f"rule evaluation error: {result} (rule: {expression})", expression))


def _message(rule: Mapping[str, Any], activation: dict[str, Any]) -> str:
    expr = rule.get("messageExpression")
    if expr:
        result = _evaluate(str(expr), activation)
        if isinstance(result, str) and result.strip() and "\n" not in result:
            return str(result)
    message = rule.get("message")
    if message:
        return str(message)
    return f"failed rule: {rule.get('rule', '')}"


def _list_key(node: Mapping[str, Any], item: Any) -> tuple[Any, ...] | None:
    keys = node.get("x-kubernetes-list-map-keys")
    if node.get("x-kubernetes-list-type") != "map" or not keys or not isinstance(item, Mapping):
        return None
    return tuple(item.get(k) for k in keys)


def _walk(node: Mapping[str, Any], value: Any, old: Any, path: str, out: list[CelViolation]) -> None:
    if value is None or not _matches_type(node, value):
        return
    if old is not _MISSING and (old is None or not _matches_type(node, old)):
        old = _MISSING
    if isinstance(value, Mapping):
        props = node.get("properties")
        extra = node.get("additionalProperties")
        old_map = old if isinstance(old, Mapping) else {}
        for key, sub in value.items():
            if isinstance(props, Mapping) and key in props:
                sub_node, sub_path = props[key], _join(path, key)
            elif isinstance(extra, Mapping):
                sub_node, sub_path = extra, f"{path}[{key}]"
            else:
                continue
            _walk(sub_node, sub, old_map.get(key, _MISSING) if old is not _MISSING else _MISSING, sub_path, out)
    elif isinstance(value, list | tuple) and isinstance(node.get("items"), Mapping):
        items = node["items"]
        old_by_key: dict[tuple[Any, ...], Any] = {}
        if old is not _MISSING and isinstance(old, list | tuple):
            for item in old:
                key = _list_key(node, item)
                if key is not None:
                    old_by_key[key] = item
        for index, item in enumerate(value):
            key = _list_key(node, item)
            old_item = old_by_key.get(key, _MISSING) if key is not None else _MISSING
            _walk(items, item, old_item, f"{path}[{index}]", out)
    _check_node(node, value, old, path, out)


def validate(schema: Mapping[str, Any], obj: Any, *, old: Any = None, path: str = "") -> list[CelViolation]:
    """Evaluate every ``x-kubernetes-validations`` rule of ``schema`` on ``obj``.

    ``schema`` is a version's ``openAPIV3Schema`` (or any node of it, with ``path`` naming where
    it sits). ``old`` is the previous object on update, for transition rules. Returns the
    violations, deepest first (empty = valid). A rule that does not compile raises
    :class:`CelRuleError`; run :func:`compile_errors` when a CRD is registered.
    """
    out: list[CelViolation] = []
    _walk(schema, obj, _MISSING if old is None else old, path, out)
    return out


def crd_version_schema(crd: Mapping[str, Any], version: str | None = None) -> Mapping[str, Any]:
    """The ``openAPIV3Schema`` of a CRD version (the storage version when ``version`` is None)."""
    versions = crd.get("spec", {}).get("versions", [])
    for v in versions:
        if (version is None and v.get("storage")) or v.get("name") == version:
            schema: Mapping[str, Any] = v.get("schema", {}).get("openAPIV3Schema", {})
            return schema
    names = ", ".join(str(v.get("name")) for v in versions)
    raise KeyError(f"CRD {crd.get('metadata', {}).get('name')} has no version {version!r} (has: {names})")


def validate_crd(crd: Mapping[str, Any], obj: Mapping[str, Any], *, old: Any = None) -> list[CelViolation]:
    """Validate ``obj`` with the CEL rules of the CRD version its ``apiVersion`` names."""
    api_version = str(obj.get("apiVersion", ""))
    version = api_version.rsplit("/", 1)[-1] if "/" in api_version else None
    return validate(crd_version_schema(crd, version), obj, old=old)
