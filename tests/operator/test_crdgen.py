"""The generated CRDs: up to date on disk, structural, valid Kubernetes objects, sane CEL."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from newapi_operator import celrules, crdgen
from newapi_operator.api.v1alpha1 import GROUP, KINDS, VERSION

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.31"


def nodes(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from nodes(sub, f"{path}.{name}" if path else name)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            yield from nodes(schema[key], f"{path}[*]")


# --------------------------------------------------------------------------------------------
# On disk
# --------------------------------------------------------------------------------------------


def test_checked_in_files_match_the_models() -> None:
    """crds/, config/crd/bases/ and docs/api-reference.md are what `newapi crds` generates."""
    stale = crdgen.write_crds(ROOT / "crds", check=True)
    assert stale == [], f"out of date: {stale}; run `newapi crds`"
    assert sorted(p.name for p in (ROOT / "crds").iterdir()) == sorted(
        f"{k.info.plural}.{GROUP}.yaml" for k in KINDS
    )


def test_cli_check_passes_on_the_checkout(newapi_bin: str) -> None:
    result = subprocess.run([newapi_bin, "crds", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_write_then_check_detects_drift_and_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    written = crdgen.write_crds(out)
    assert len(written) == 2 * len(KINDS) + 1
    assert crdgen.write_crds(out, check=True) == []
    for path in [*out.iterdir(), *(tmp_path / "config/crd/bases").iterdir()]:
        assert path.read_bytes() == (ROOT / path.relative_to(tmp_path)).read_bytes()
    assert (tmp_path / "docs/api-reference.md").read_bytes() == (ROOT / "docs/api-reference.md").read_bytes()

    victim = out / f"channels.{GROUP}.yaml"
    victim.write_text(victim.read_text().replace("byok-passthrough", "byok"))
    stale = out / f"oldkinds.{GROUP}.yaml"
    stale.write_text("{}\n")
    (out / "README.txt").write_text("not ours\n")
    assert sorted(crdgen.write_crds(out, check=True)) == sorted([str(victim), str(stale)])
    assert stale.exists()
    crdgen.write_crds(out)
    assert crdgen.write_crds(out, check=True) == []
    assert not stale.exists()
    assert (out / "README.txt").exists()


def test_generation_is_deterministic() -> None:
    first = [crdgen.dump_yaml(c) for c in crdgen.build_crds()]
    second = [crdgen.dump_yaml(c) for c in crdgen.build_crds()]
    assert first == second
    assert all(text.endswith("\n") and not text.endswith("\n\n") for text in first)


# --------------------------------------------------------------------------------------------
# As Kubernetes objects
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k.info.kind for k in KINDS])
def test_crd_is_a_valid_customresourcedefinition(kind: str, crds: dict[str, Any]) -> None:
    kubernetes_validate.validate(crds[kind], K8S_VERSION, strict=True)


@pytest.mark.parametrize("kind", [k.info.kind for k in KINDS])
def test_crd_shape(kind: str, crds: dict[str, Any]) -> None:
    model = next(k for k in KINDS if k.info.kind == kind)
    crd = crds[kind]
    assert crd["metadata"]["name"] == f"{model.info.plural}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == model.info.short_names
    assert spec["names"]["categories"] == ["newapi"]
    assert spec["names"]["singular"] == model.info.singular
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    assert version["additionalPrinterColumns"] == model.info.printer_columns
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["required"] == ["spec"]
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert "status" in schema["properties"]
    status = schema["properties"]["status"]
    assert status["properties"]["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["properties"]["conditions"]["items"]["required"][:1] == ["type"]


FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "nullable", "title", "const", "definitions"}


@pytest.mark.parametrize("kind", [k.info.kind for k in KINDS])
def test_schema_is_structural(kind: str, crds: dict[str, Any]) -> None:
    schema = celrules.crd_version_schema(crds[kind])
    for path, node in nodes(schema):
        assert not FORBIDDEN & set(node), (path, FORBIDDEN & set(node))
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        assert node.get("additionalProperties", True) is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        if node["type"] == "array":
            assert "items" in node, path
        for name in node.get("required", []):
            assert name in node["properties"], (path, name)


@pytest.mark.parametrize("kind", [k.info.kind for k in KINDS])
def test_defaults_validate_against_their_schema(kind: str, crds: dict[str, Any], crd_check: ModuleType) -> None:
    schema = celrules.crd_version_schema(crds[kind])
    checked = 0
    for path, node in nodes(schema):
        if "default" in node:
            value = crd_check.apply_defaults(node, node["default"])
            jsonschema.validate(value, crd_check.to_json_schema(node))
            assert celrules.validate(node, value, path=path) == [], path
            checked += 1
    assert checked > 0


def test_money_is_int64() -> None:
    crds = {c["spec"]["names"]["kind"]: celrules.crd_version_schema(c) for c in crdgen.build_crds()}
    money = {
        "Channel": ["spec.pricing.inputPerMillion", "spec.pricing.outputPerMillion",
                    "spec.pricing.models[*].inputPerMillion", "spec.pricing.models[*].outputPerMillion"],
        "CustomerKey": ["spec.creditGrant", "spec.spendingCap.daily", "spec.spendingCap.monthly",
                        "status.usage.balance", "status.usage.spentToday", "status.usage.spentThisMonth"],
    }
    for kind, paths in money.items():
        found = dict(nodes(crds[kind]))
        for path in paths:
            assert found[path]["type"] == "integer", path
            assert found[path]["format"] == "int64", path


# --------------------------------------------------------------------------------------------
# CEL rules as a real API server needs them
# --------------------------------------------------------------------------------------------


def all_rules() -> Iterator[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]]:
    for crd in crdgen.build_crds():
        for path, node in nodes(celrules.crd_version_schema(crd)):
            for rule in node.get("x-kubernetes-validations", []):
                yield crd["spec"]["names"]["kind"], path, node, rule


def test_every_rule_compiles_with_supported_functions(crds: dict[str, Any]) -> None:
    for crd in crds.values():
        assert celrules.compile_errors(celrules.crd_version_schema(crd)) == []


def test_rules_are_the_declared_ones() -> None:
    found = {(kind, rule["rule"]) for kind, _, _, rule in all_rules()}
    declared = {(kind, r.rule) for kind, rules in crdgen.CEL_RULES.items() for r in rules}
    assert found == declared
    assert len(found) >= 12


def test_field_paths_point_at_declared_fields() -> None:
    for kind, path, node, rule in all_rules():
        if "fieldPath" not in rule:
            continue
        target = node
        for part in re.findall(r"\.([A-Za-z_][\w-]*)", rule["fieldPath"]):
            assert part in target.get("properties", {}), (kind, path, rule["fieldPath"])
            target = target["properties"][part]


def test_messages_name_the_field_and_the_fix() -> None:
    for kind, path, _, rule in all_rules():
        field = rule.get("fieldPath", "").rsplit(".", 1)[-1] or path.rsplit(".", 1)[-1]
        assert field in rule["message"], (kind, rule["message"])
        assert "\n" not in rule["message"]
        assert len(rule["message"]) > 40, rule["message"]


def test_rule_cost_is_bounded() -> None:
    """Strings matched with a regex and lists iterated by a rule carry maxLength/maxItems, as
    Kubernetes' CEL cost estimator needs (an unbounded one makes the API server reject the CRD)."""
    for kind, path, node, rule in all_rules():
        expr = rule["rule"]
        if "self.matches(" in expr:
            assert "maxLength" in node or "enum" in node, (kind, path)
        for name in re.findall(r"self\.(\w+)\.matches\(", expr):
            assert "maxLength" in node["properties"][name], (kind, path, name)
        for name in re.findall(r"\bin self\.(\w+)|self\.(\w+)\.(?:all|exists|exists_one|map|filter)\(", expr):
            prop = node["properties"][next(n for n in name if n)]
            assert "maxItems" in prop or "maxProperties" in prop, (kind, path, name)
            items = prop.get("items") or prop.get("additionalProperties")
            assert items.get("type") != "string" or "maxLength" in items or "enum" in items, (kind, path, name)


# --------------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------------


def test_reference_lists_every_field_and_rule() -> None:
    text = crdgen.render_reference(crdgen.build_crds())
    for kind in KINDS:
        assert f"## {kind.info.kind}" in text
    for _kind, path, _, _ in all_rules():
        assert f"`{path}`" in text, path
    for rules in crdgen.OPERATOR_ENFORCED.values():
        for rule in rules:
            assert f"`{rule}`" in text
    for field in ("spec.attestation.contractRef", "spec.geo.sanctionedRegions.justification",
                  "spec.spendingCap.monthly", "status.conditions[].observedGeneration"):
        assert f"`{field}`" in text, field


def test_generated_yaml_round_trips() -> None:
    for crd in crdgen.build_crds():
        assert yaml.safe_load(crdgen.dump_yaml(crd)) == crd
