"""The compliance rules, table-driven: every valid fixture passes and every invalid one fails, both
in Python (newapi_operator.api.compliance) and, where one object suffices, in the CRD (OpenAPI
schema + CEL, evaluated as an API server would)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from newapi_operator import celrules, crdgen
from newapi_operator.api import compliance
from newapi_operator.api.v1alpha1 import Channel, CustomerKey, NewAPIInstance

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CASES: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "invalid.yaml").read_text())
VALID = sorted(p.stem for p in (FIXTURES / "valid").glob("*.yaml"))
COMPLIANCE_SOURCE = Path(compliance.__file__).read_text()

Make = Callable[[Mapping[str, Any]], dict[str, Any]]


def _instance_spec(obj: dict[str, Any]) -> Any:
    return NewAPIInstance.model_validate(obj).spec


def python_violations(case: Mapping[str, Any], make: Make) -> list[compliance.Violation]:
    """What the Python validation says about the case's objects."""
    obj = make(case)
    check = case.get("check", "object")
    if check == "object":
        return compliance.validate_object(obj)
    if check == "key":
        instance = make(case.get("instance", {"object": "instance"}))
        return compliance.validate_customer_key(obj, _instance_spec(instance))
    assert check == "binding", check
    channels = [make(ref) for ref in case["channels"]]
    out = [v for o in [obj, *channels] for v in compliance.validate_object(o)]
    pairs = [(c["metadata"]["name"], Channel.model_validate(c).spec) for c in channels]
    return out + compliance.check_binding(_instance_spec(obj), pairs)


def case_objects(case: Mapping[str, Any], make: Make) -> list[dict[str, Any]]:
    objects = [make(case)]
    if case.get("check") == "binding":
        objects += [make(ref) for ref in case["channels"]]
    if case.get("check") == "key":
        objects.append(make(case.get("instance", {"object": "instance"})))
    return objects


def cel_rule_ids(kind: str, violations: list[celrules.CelViolation]) -> set[str]:
    by_expr = {r.rule: r.compliance_rule for r in crdgen.CEL_RULES[kind]}
    return {by_expr[v.rule] for v in violations}


def _leaf(field: str) -> str:
    return re.split(r"[.\[]", field.rstrip("]"))[-1]


# --------------------------------------------------------------------------------------------
# Valid fixtures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID)
def test_valid_fixture_passes_python(name: str, valid_objects: dict[str, dict[str, Any]]) -> None:
    obj = valid_objects[name]
    if obj["kind"] == "CustomerKey":
        violations = compliance.validate_customer_key(obj, _instance_spec(valid_objects["instance"]))
    else:
        violations = compliance.validate_object(obj)
    assert violations == []


@pytest.mark.parametrize("name", VALID)
def test_valid_fixture_passes_crd(
    name: str, valid_objects: dict[str, dict[str, Any]], crds: dict[str, Any], crd_check: ModuleType
) -> None:
    obj = valid_objects[name]
    assert crd_check.crd_errors(crds[obj["kind"]], obj) == []


@pytest.mark.parametrize("name", VALID)
def test_crd_defaults_equal_model_defaults(
    name: str, valid_objects: dict[str, dict[str, Any]], crds: dict[str, Any], crd_check: ModuleType
) -> None:
    """What the API server stores after defaulting means the same to the models as what was sent."""
    obj = valid_objects[name]
    model = {"Channel": Channel, "NewAPIInstance": NewAPIInstance, "CustomerKey": CustomerKey}[obj["kind"]]
    defaulted = crd_check.apply_defaults(celrules.crd_version_schema(crds[obj["kind"]]), obj)
    assert defaulted != obj, "the CRD applied no defaults"
    assert model.model_validate(defaulted) == model.model_validate(obj)


def test_valid_channels_bind_to_valid_instances(valid_objects: dict[str, dict[str, Any]]) -> None:
    objects = [o for o in valid_objects.values() if o["kind"] == "Channel"]
    channels = [(o["metadata"]["name"], Channel.model_validate(o).spec) for o in objects]
    assert len(channels) == 4
    for name in ("instance", "instance-ha"):
        assert compliance.check_binding(_instance_spec(valid_objects[name]), channels) == []


# --------------------------------------------------------------------------------------------
# Invalid fixtures
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_invalid_fixture_rejected_by_python(case: dict[str, Any], make_object: Make) -> None:
    violations = python_violations(case, make_object)
    fields = {v.field for v in violations}
    assert case["python"] in fields, [str(v) for v in violations]
    hit = [v for v in violations if v.field == case["python"]]
    assert {v.rule for v in hit} == {case["python_rule"]}, [str(v) for v in hit]
    for v in hit:
        assert v.message.strip()
        if case.get("python_message"):
            assert case["python_message"] in v.message


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_invalid_fixture_rejected_by_crd_where_expressible(
    case: dict[str, Any], make_object: Make, crds: dict[str, Any], crd_check: ModuleType
) -> None:
    objects = case_objects(case, make_object)
    if case["crd"] is None:
        # Needs other objects: a real API server accepts each of them, the operator must not.
        for obj in objects:
            assert crd_check.crd_errors(crds[obj["kind"]], obj) == [], obj["metadata"]["name"]
        enforced = {rule for rules in crdgen.OPERATOR_ENFORCED.values() for rule in rules}
        assert case["python_rule"] in enforced
        return
    obj = objects[0]
    errors = crd_check.crd_errors(crds[obj["kind"]], obj)
    assert {field for field, _ in errors} == {case["crd"]}, errors
    if case.get("crd_message"):
        assert any(case["crd_message"] in message for _, message in errors), errors
    cel = celrules.validate_crd(crds[obj["kind"]], crd_check.apply_defaults(
        celrules.crd_version_schema(crds[obj["kind"]]), obj))
    for violation in cel:
        assert _leaf(case["crd"]) in violation.message, f"CEL message does not name the field: {violation}"
    if case["python_rule"] != "schema":
        ids = cel_rule_ids(obj["kind"], cel)
        assert ids == {case["python_rule"]} or (not ids and case["python_rule"] in crdgen.SCHEMA_ENFORCED), cel


def test_every_compliance_rule_has_an_invalid_fixture() -> None:
    rules = set(re.findall(r'rule="([a-z0-9-]+)"', COMPLIANCE_SOURCE))
    assert rules, "no rule ids found in compliance.py"
    covered = {c["python_rule"] for c in CASES}
    assert rules <= covered, f"rules without an invalid fixture: {sorted(rules - covered)}"


def test_every_compliance_rule_is_classified() -> None:
    """Each rule is enforced by the CRD (CEL or schema) or documented as operator-enforced."""
    rules = set(re.findall(r'rule="([a-z0-9-]+)"', COMPLIANCE_SOURCE))
    cel = {r.compliance_rule for rules_ in crdgen.CEL_RULES.values() for r in rules_}
    operator = {r for rules_ in crdgen.OPERATOR_ENFORCED.values() for r in rules_}
    unclassified = rules - {"schema"} - cel - operator - set(crdgen.SCHEMA_ENFORCED)
    assert not unclassified


def test_every_cel_rule_is_triggered_by_a_fixture(
    make_object: Make, crds: dict[str, Any], crd_check: ModuleType
) -> None:
    fired: set[str] = set()
    for case in CASES:
        obj = make_object(case)
        schema = celrules.crd_version_schema(crds[obj["kind"]])
        fired |= cel_rule_ids(obj["kind"], celrules.validate(schema, crd_check.apply_defaults(schema, obj)))
    all_rules = {r.compliance_rule for rules in crdgen.CEL_RULES.values() for r in rules}
    assert fired == all_rules
