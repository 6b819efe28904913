"""Structural schema pruning, defaulting and validation (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from newapi_operator.apiserver import schema

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["n"],
            "properties": {
                "n": {"type": "integer", "minimum": 1, "maximum": 5, "format": "int32"},
                "x": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "multipleOf": 0.5},
                "s": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "when": {"type": "string", "format": "date-time"},
                "opt": {"type": "string", "nullable": True},
                "ios": {"x-kubernetes-int-or-string": True},
                "m": {"type": "object", "additionalProperties": {"type": "integer"}},
                "obj": {"type": "object", "default": {}, "properties": {"d": {"type": "boolean", "default": True}}},
                "items": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
                    "k": {"type": "string", "default": "kk"}}}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "emb": {"type": "object", "x-kubernetes-embedded-resource": True,
                        "x-kubernetes-preserve-unknown-fields": True},
                "one": {"oneOf": [{"required": ["a"]}, {"required": ["b"]}], "type": "object"},
            },
        },
    },
}


def messages(obj: dict[str, Any]) -> dict[str, str]:
    return {e.field: e.detail for e in schema.validate(obj, SCHEMA)}


def test_prune_drops_unknown_fields_and_reports_them() -> None:
    obj = {"apiVersion": "g/v1", "kind": "K", "metadata": {"name": "x", "junk": 1},
           "spec": {"n": 1, "zzz": 2, "free": {"any": {"thing": 1}}, "m": {"k": 1},
                    "items": [{"k": "a", "extra": 1}], "opt": None, "s": None},
           "status": {"gone": True}}
    pruned, paths = schema.prune(obj, SCHEMA)
    assert pruned["metadata"] == {"name": "x"}
    assert pruned["spec"] == {"n": 1, "free": {"any": {"thing": 1}}, "m": {"k": 1}, "items": [{"k": "a"}],
                              "opt": None}
    assert sorted(paths) == ["spec.items[0].extra", "spec.zzz", "status"]


def test_defaults_fill_absent_fields_recursively() -> None:
    out = schema.apply_defaults({"spec": {"n": 1, "items": [{}]}}, SCHEMA)
    assert out["spec"]["s"] == "a"
    assert out["spec"]["obj"] == {"d": True}
    assert out["spec"]["items"] == [{"k": "kk"}]


@pytest.mark.parametrize(("spec", "field", "text"), [
    ({}, "spec.n", "Required value"),
    ({"n": "1"}, "spec.n", "must be of type integer"),
    ({"n": True}, "spec.n", "must be of type integer"),
    ({"n": 0}, "spec.n", "greater than or equal to 1"),
    ({"n": 6}, "spec.n", "less than or equal to 5"),
    ({"n": 1, "x": 0}, "spec.x", "greater than 0"),
    ({"n": 1, "x": 0.3}, "spec.x", "multiple of 0.5"),
    ({"n": 1, "s": "c"}, "spec.s", 'supported values: "a", "b"'),
    ({"n": 1, "when": "yesterday"}, "spec.when", "date-time"),
    ({"n": 1, "ios": 1.5}, "spec.ios", "must be of type"),
    ({"n": 1, "m": {"k": "v"}}, "spec.m[k]", "must be of type integer"),
    ({"n": 1, "items": []}, "spec.items", "at least 1 items"),
    ({"n": 1, "emb": {"kind": "X"}}, "spec.emb.apiVersion", "Required value"),
    ({"n": 1, "one": {"a": 1, "b": 2}}, "spec.one", "exactly one"),
])
def test_validation_messages(spec: dict[str, Any], field: str, text: str) -> None:
    found = messages({"spec": spec})
    assert field in found, found
    assert text in found[field]


def test_valid_object_has_no_errors() -> None:
    obj = {"spec": {"n": 2, "x": 1.5, "s": "b", "when": "2026-01-01T00:00:00Z", "opt": None, "ios": "50%",
                    "m": {"a": 1}, "items": [{"k": "x"}], "emb": {"apiVersion": "v1", "kind": "X"},
                    "one": {"a": 1}}}
    assert schema.validate(obj, SCHEMA) == []
    assert schema.validate({"spec": {"n": 1.0}}, SCHEMA) == []  # an integral number is an integer
