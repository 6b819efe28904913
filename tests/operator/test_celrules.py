"""The CEL evaluator on hand-written schemas: binding of self, paths, messages, transitions."""

from __future__ import annotations

from typing import Any

import pytest

from newapi_operator import celrules


def rule(expr: str, **extra: str) -> dict[str, str]:
    return {"rule": expr, **extra}


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                rule("self.min <= self.max", message="spec.min must not exceed spec.max", fieldPath=".min"),
            ],
            "properties": {
                "min": {"type": "integer"},
                "max": {"type": "integer"},
                "name": {
                    "type": "string",
                    "maxLength": 20,
                    "x-kubernetes-validations": [
                        rule("self.startsWith('n-')", messageExpression="'name ' + self + ' must start with n-'"),
                    ],
                },
                "tags": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "string",
                        "x-kubernetes-validations": [rule("size(self) > 0")],
                    },
                },
                "items": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["id"],
                    "items": {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "string"}, "size": {"type": "integer"}},
                        "x-kubernetes-validations": [
                            rule("self.size >= 0", message="items[].size must be >= 0"),
                            rule("self.size >= oldSelf.size", message="items[].size may only grow"),
                        ],
                    },
                },
                "when": {
                    "type": "string",
                    "format": "date-time",
                    "x-kubernetes-validations": [
                        rule("self > timestamp('2020-01-01T00:00:00Z')", message="when must be after 2020")
                    ],
                },
            },
        }
    },
}


def fields(violations: list[celrules.CelViolation]) -> list[str]:
    return sorted(v.field for v in violations)


def test_valid_object_has_no_violations() -> None:
    obj = {"spec": {"min": 1, "max": 2, "name": "n-a", "tags": {"a": "b"}, "items": [{"id": "x", "size": 1}]}}
    assert celrules.validate(SCHEMA, obj) == []


def test_field_path_and_message() -> None:
    [v] = celrules.validate(SCHEMA, {"spec": {"min": 3, "max": 2}})
    assert v.field == "spec.min"
    assert v.message == "spec.min must not exceed spec.max"
    assert v.rule == "self.min <= self.max"
    assert str(v) == "spec.min: spec.min must not exceed spec.max"


def test_message_expression_wins_over_message() -> None:
    [v] = celrules.validate(SCHEMA, {"spec": {"min": 1, "max": 1, "name": "bad"}})
    assert (v.field, v.message) == ("spec.name", "name bad must start with n-")


def test_default_message_names_the_rule() -> None:
    [v] = celrules.validate(SCHEMA, {"spec": {"min": 1, "max": 1, "tags": {"team": ""}}})
    assert (v.field, v.message) == ("spec.tags[team]", "failed rule: size(self) > 0")


def test_list_items_are_indexed() -> None:
    obj = {"spec": {"min": 1, "max": 1, "items": [{"id": "a", "size": 1}, {"id": "b", "size": -1}]}}
    [v] = celrules.validate(SCHEMA, obj)
    assert v.field == "spec.items[1]"


def test_absent_values_are_not_evaluated() -> None:
    assert celrules.validate(SCHEMA, {}) == []
    assert celrules.validate(SCHEMA, {"spec": None}) == []


def test_wrong_type_is_left_to_schema_validation() -> None:
    assert celrules.validate(SCHEMA, {"spec": {"min": 1, "max": 1, "name": 5}}) == []


def test_evaluation_error_is_a_violation() -> None:
    # spec.max is absent: the rule reads it without has(), as Kubernetes would report.
    [v] = celrules.validate(SCHEMA, {"spec": {"min": 1}})
    assert v.field == "spec.min"
    assert "evaluation error" in v.message


def test_unknown_fields_are_pruned_before_evaluation() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "x-kubernetes-validations": [rule("!has(self.secret)", message="secret is pruned, never seen")],
    }
    assert celrules.validate(schema, {"a": "x", "secret": "y"}) == []


def test_date_time_strings_are_timestamps() -> None:
    assert celrules.validate(SCHEMA, {"spec": {"min": 1, "max": 1, "when": "2026-05-01T10:00:00Z"}}) == []
    [v] = celrules.validate(SCHEMA, {"spec": {"min": 1, "max": 1, "when": "2019-05-01T10:00:00Z"}})
    assert v.message == "when must be after 2020"


def test_transition_rules_need_an_old_object_and_correlate_map_lists() -> None:
    new = {"spec": {"min": 1, "max": 1, "items": [{"id": "b", "size": 1}, {"id": "a", "size": 5}]}}
    assert celrules.validate(SCHEMA, new) == []  # create: transition rules skipped
    old = {"spec": {"min": 1, "max": 1, "items": [{"id": "a", "size": 3}, {"id": "b", "size": 2}]}}
    [v] = celrules.validate(SCHEMA, new, old=old)
    assert (v.field, v.message) == ("spec.items[0]", "items[].size may only grow")
    assert celrules.validate(SCHEMA, old, old=old) == []


def test_validate_crd_picks_the_version_of_the_object() -> None:
    crd = {
        "metadata": {"name": "things.example.com"},
        "spec": {
            "versions": [
                {"name": "v1", "storage": True, "schema": {"openAPIV3Schema": SCHEMA}},
                {"name": "v2", "storage": False, "schema": {"openAPIV3Schema": {"type": "object"}}},
            ]
        },
    }
    bad = {"spec": {"min": 3, "max": 2}}
    assert fields(celrules.validate_crd(crd, {"apiVersion": "example.com/v1", **bad})) == ["spec.min"]
    assert celrules.validate_crd(crd, {"apiVersion": "example.com/v2", **bad}) == []
    with pytest.raises(KeyError, match="v3"):
        celrules.validate_crd(crd, {"apiVersion": "example.com/v3", **bad})


def test_rules_are_compiled_once() -> None:
    celrules.compile_rule.cache_clear()
    obj = {"spec": {"min": 1, "max": 2}}
    celrules.validate(SCHEMA, obj)
    misses = celrules.compile_rule.cache_info().misses
    for _ in range(3):
        celrules.validate(SCHEMA, obj)
    assert celrules.compile_rule.cache_info().misses == misses
    assert celrules.compile_rule.cache_info().hits >= 3


@pytest.mark.parametrize(
    "expr",
    ["self.name.lowerAscii() == 'a'", "self.x.trim() != ''", "self.list.join(',') == ''", "quantity(self.q) > 1"],
)
def test_kubernetes_extension_functions_are_reported(expr: str) -> None:
    with pytest.raises(celrules.CelRuleError, match="not supported"):
        celrules.compile_rule(expr)
    schema = {"type": "object", "x-kubernetes-validations": [rule(expr)]}
    [error] = celrules.compile_errors(schema)
    assert error.startswith("<root>: rule:")


def test_function_names_inside_strings_are_fine() -> None:
    celrules.compile_rule("self.a == 'use trim() and url(x)' || self.b == \"join(\"")


def test_syntax_errors_are_reported() -> None:
    with pytest.raises(celrules.CelRuleError, match="invalid CEL expression"):
        celrules.compile_rule("self.a ==")
    schema = {"type": "object", "properties": {"a": {
        "type": "string", "x-kubernetes-validations": [rule("self ==", messageExpression="'x' +")]}}}
    errors = celrules.compile_errors(schema)
    assert [e.split(": invalid")[0] for e in errors] == ["a: rule", "a: messageExpression"]
