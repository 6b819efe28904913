"""CustomResourceDefinitions generated from the v1alpha1 models (``newapi crds``).

The models in :mod:`newapi_operator.api.v1alpha1` are the source of truth. This module turns
their JSON schema into Kubernetes *structural* OpenAPI v3 schemas (every ``$ref`` inlined, no
``anyOf``/``null``, ``additionalProperties`` only for maps, defaults that validate), adds the
single-object compliance rules as CEL ``x-kubernetes-validations`` (:data:`CEL_RULES`), and
writes one YAML file per CRD plus a field reference (``docs/api-reference.md``).

Rules that need two objects are enforced by the operator, not by the API server; they are listed
in :data:`OPERATOR_ENFORCED` and in each CRD's description.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from .api.v1alpha1 import (
    CHANNEL_TYPES,
    DEFAULT_SANCTIONED_REGIONS,
    GROUP,
    KINDS,
    SUBSCRIPTION_EXCLUDED_MESSAGE,
    SUBSCRIPTION_LOOKALIKE,
    VERSION,
    Resource,
)

Schema = dict[str, Any]

#: Category every kind is listed under (``kubectl get newapi``).
CATEGORIES = ["newapi"]


# --------------------------------------------------------------------------------------------
# CEL rules
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CelRule:
    """One ``x-kubernetes-validations`` entry, tied to the compliance rule it mirrors.

    ``path`` is the schema node the rule sits on, as dotted property names from the version
    schema root (``spec.attestation``); ``*`` stands for a map value or list item.
    """

    compliance_rule: str
    path: str
    rule: str
    message: str
    message_expression: str | None = None
    field_path: str | None = None
    reason: str | None = None

    def manifest(self) -> dict[str, str]:
        """The rule as it appears in the CRD."""
        out = {"rule": self.rule, "message": self.message}
        if self.message_expression:
            out["messageExpression"] = self.message_expression
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


def _a_type(expr: str) -> str:
    """CEL for the article before a channel type ("an anthropic", "a vllm")."""
    return f"({expr} in ['openai-compatible', 'anthropic'] ? 'an ' : 'a ')"


_WANT_ATTESTATION = (
    "(self.type == 'vllm' ? 'in-cluster' : self.type == 'byok-passthrough' ? 'byok' : 'commercial-contract')"
)
_TYPES = ", ".join(f"'{t}'" for t in CHANNEL_TYPES)
_REGIONS = ", ".join(f"'{r}'" for r in DEFAULT_SANCTIONED_REGIONS)
#: A character Python's str.strip() would keep: not ASCII whitespace, not a Unicode separator.
_NON_BLANK = "'[^[:space:]\\\\p{Z}]'"

#: The compliance rules a real API server enforces, by kind (see compliance.py for the Python side).
CEL_RULES: dict[str, tuple[CelRule, ...]] = {
    "Channel": (
        CelRule(
            compliance_rule="subscription-lookalike",
            path="spec.type",
            rule=f"self in [{_TYPES}] || !self.matches('(?i)({SUBSCRIPTION_LOOKALIKE.pattern})')",
            message=f"spec.type: this channel type is not allowed: {SUBSCRIPTION_EXCLUDED_MESSAGE}",
            reason="FieldValueForbidden",
        ),
        CelRule(
            compliance_rule="attestation-kind-fits-type",
            path="spec",
            rule=(
                f"!has(self.attestation) || !(self.type in [{_TYPES}]) || "
                f"self.attestation.kind == {_WANT_ATTESTATION}"
            ),
            message=(
                "spec.attestation.kind must fit spec.type: vllm needs in-cluster, openai-compatible and "
                "anthropic need commercial-contract, byok-passthrough needs byok"
            ),
            message_expression=(
                f"{_a_type('self.type')} + self.type + "
                f"\" channel needs spec.attestation.kind '\" + {_WANT_ATTESTATION} + \"', not '\" + "
                "self.attestation.kind + \"'\""
            ),
            field_path=".attestation.kind",
            reason="FieldValueInvalid",
        ),
        CelRule(
            compliance_rule="in-cluster-owner",
            path="spec.attestation",
            rule="self.kind != 'in-cluster' || (has(self.owner) && size(self.owner) > 0)",
            message=(
                "spec.attestation.owner is required for an in-cluster attestation: name who owns the "
                "weights and the inference hardware"
            ),
            field_path=".owner",
            reason="FieldValueRequired",
        ),
        CelRule(
            compliance_rule="commercial-account-id",
            path="spec.attestation",
            rule="self.kind != 'commercial-contract' || (has(self.accountId) && size(self.accountId) > 0)",
            message=(
                "spec.attestation.accountId is required for a commercial-contract attestation: the "
                "provider-side account id of the operator's paid account"
            ),
            field_path=".accountId",
            reason="FieldValueRequired",
        ),
        CelRule(
            compliance_rule="commercial-contract-ref",
            path="spec.attestation",
            rule="self.kind != 'commercial-contract' || (has(self.contractRef) && size(self.contractRef) > 0)",
            message=(
                "spec.attestation.contractRef is required for a commercial-contract attestation: a "
                "reference to the signed reseller terms"
            ),
            field_path=".contractRef",
            reason="FieldValueRequired",
        ),
        CelRule(
            compliance_rule="endpoint-required",
            path="spec",
            rule="self.type == 'byok-passthrough' || (has(self.endpoint) && size(self.endpoint) > 0)",
            message=(
                "spec.endpoint is required unless spec.type is byok-passthrough: the upstream base URL, "
                "e.g. https://api.example.com/v1"
            ),
            message_expression=(
                f"'spec.endpoint is required for ' + {_a_type('self.type')} + self.type + "
                "' channel: the upstream base URL, e.g. https://api.example.com/v1'"
            ),
            field_path=".endpoint",
            reason="FieldValueRequired",
        ),
        CelRule(
            compliance_rule="commercial-secret-required",
            path="spec",
            rule="!(self.type in ['openai-compatible', 'anthropic']) || has(self.secretRef)",
            message=(
                "spec.secretRef is required for openai-compatible and anthropic channels: the Secret "
                "(name, key) holding the operator's API key"
            ),
            message_expression=(
                f"'spec.secretRef is required for ' + {_a_type('self.type')} + self.type + "
                "\" channel: the Secret (name, key) holding the operator's API key\""
            ),
            field_path=".secretRef",
            reason="FieldValueRequired",
        ),
        CelRule(
            compliance_rule="byok-no-secret",
            path="spec",
            rule="self.type != 'byok-passthrough' || !has(self.secretRef)",
            message=(
                "spec.secretRef must be absent on a byok-passthrough channel: the customer's key comes "
                "with each request and is never stored; remove secretRef"
            ),
            field_path=".secretRef",
            reason="FieldValueForbidden",
        ),
        CelRule(
            compliance_rule="byok-providers",
            path="spec",
            rule=(
                "self.type != 'byok-passthrough' || (has(self.allowedProviders) && size(self.allowedProviders) > 0)"
            ),
            message=(
                "spec.allowedProviders: a byok-passthrough channel needs at least one provider "
                "(openai, anthropic, google)"
            ),
            field_path=".allowedProviders",
            reason="FieldValueRequired",
        ),
    ),
    "NewAPIInstance": (
        CelRule(
            compliance_rule="geo-relaxation",
            path="spec.geo.sanctionedRegions",
            rule=(
                f"!has(self.block) || [{_REGIONS}].all(r, r in self.block) || "
                "(has(self.allowRelaxation) && self.allowRelaxation && has(self.justification) && "
                f"self.justification.matches({_NON_BLANK}))"
            ),
            message=(
                "spec.geo.sanctionedRegions.block removes a default sanctioned region "
                f"({', '.join(DEFAULT_SANCTIONED_REGIONS)}); relaxing the baseline needs "
                "allowRelaxation: true and a non-empty justification reviewed by counsel"
            ),
            field_path=".block",
            reason="FieldValueForbidden",
        ),
        CelRule(
            compliance_rule="replicas-need-database",
            path="spec",
            rule=(
                "!has(self.replicas) || self.replicas <= 1 || (has(self.database) && "
                "has(self.database.existingSecret) && size(self.database.existingSecret) > 0)"
            ),
            message=(
                "spec.database.existingSecret is required when spec.replicas > 1: a shared PostgreSQL "
                "(embedded SQLite serves one replica only)"
            ),
            message_expression=(
                "'spec.replicas: ' + string(self.replicas) + ' needs a shared PostgreSQL: set "
                "spec.database.existingSecret (embedded SQLite serves one replica only)'"
            ),
            field_path=".database.existingSecret",
            reason="FieldValueRequired",
        ),
        CelRule(
            compliance_rule="replicas-need-valkey",
            path="spec",
            rule=(
                "!has(self.replicas) || self.replicas <= 1 || (has(self.valkey) && has(self.valkey.url) && "
                "size(self.valkey.url) > 0)"
            ),
            message=(
                "spec.valkey.url is required when spec.replicas > 1: a shared Valkey/Redis for limits "
                "(in-process limits serve one replica only)"
            ),
            message_expression=(
                "'spec.replicas: ' + string(self.replicas) + ' needs a shared Valkey/Redis for limits: "
                "set spec.valkey.url (in-process limits serve one replica only)'"
            ),
            field_path=".valkey.url",
            reason="FieldValueRequired",
        ),
    ),
    "CustomerKey": (),
}

#: Compliance rules the CRD schema (not CEL) enforces, with the schema keyword that does it.
SCHEMA_ENFORCED: dict[str, str] = {
    "channel-type": "spec.type enum (vllm, openai-compatible, anthropic, byok-passthrough)",
    "attestation-required": "spec.attestation is required",
    "downgrade-target": "spec.tiers[*].modelDowngrades[*] minLength: 1",
}

#: Rules that need more than one object: enforced by the operator (and ``compliance.check_*``).
OPERATOR_ENFORCED: dict[str, dict[str, str]] = {
    "NewAPIInstance": {
        "free-tier-in-cluster": (
            "a free tier (tiers.<name>.free: true) may only list in-cluster (vllm) channels in "
            "allowedChannels"
        ),
        "aup-off-with-commercial": "aup.enforcement off is rejected while commercial channels are bound",
    },
    "Channel": {
        "free-tier-in-cluster": (
            "spec.tiers may not name a free tier of the instance unless the channel is in-cluster (vllm)"
        ),
    },
    "CustomerKey": {
        "tier-exists": "spec.tier must be a tier defined on the referenced NewAPIInstance",
        "finite-budget": (
            "a key needs creditGrant or spendingCap.daily/monthly unless its tier is marked unlimitedCredit"
        ),
    },
}

#: Extra schema keywords per node: bounds that keep Kubernetes' CEL cost estimate small, and
#: checks the JSON schema of the models cannot carry.
_SCHEMA_PATCHES: dict[str, dict[str, Schema]] = {
    "Channel": {
        "spec.type": {"maxLength": 64},
    },
    "NewAPIInstance": {
        "spec.geo.sanctionedRegions.block": {"maxItems": 256},
        "spec.geo.sanctionedRegions.block.*": {"maxLength": 64},
        "spec.geo.sanctionedRegions.justification": {"maxLength": 4096},
        "spec.tiers.*.modelDowngrades.*": {"minLength": 1},
    },
    "CustomerKey": {},
}


def _field_model(kind: type[Resource], field: str) -> type[BaseModel]:
    """The model class of ``spec``/``status`` (unwrapping ``X | None``)."""
    annotation = kind.model_fields[field].annotation
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    raise TypeError(f"{kind.__name__}.{field} is not a model: {annotation!r}")


def _kind_description(kind: type[Resource]) -> str:
    spec_doc = (_field_model(kind, "spec").__doc__ or "").strip()
    lines = [f"{kind.info.kind} ({GROUP}/{VERSION}). {spec_doc}".strip()]
    enforced = OPERATOR_ENFORCED.get(kind.info.kind, {})
    if enforced:
        rules = "; ".join(enforced.values())
        lines.append(f"Enforced by the operator, not the API server (they need other objects): {rules}.")
    return " ".join(lines)


# --------------------------------------------------------------------------------------------
# Structural schema
# --------------------------------------------------------------------------------------------


class _Generator(GenerateJsonSchema):
    """Pydantic's generator, with ``default_factory`` defaults the API server can apply.

    A nested struct defaults to ``{}`` (its own field defaults then apply); a non-empty list or
    map defaults to its value; empty collections get no default (absent means the same).
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            value = schema.get("default", NoDefault)
        else:
            value = factory()  # type: ignore[call-arg]
        if value is None:
            return NoDefault
        if isinstance(value, BaseModel):
            return {}
        if isinstance(value, list | dict) and not value:
            return NoDefault
        return value


_DROP = {"title", "$defs"}
_NULL = {"type": "null"}


def _structural(node: Schema, defs: Mapping[str, Schema]) -> Schema:
    """Inline refs, drop null branches and pydantic-only keywords."""
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        base = _structural(target, defs)
        base.update(_structural(node, defs))
        return base
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            options = [o for o in node.pop(key) if o != _NULL]
            if len(options) != 1:
                raise ValueError(f"cannot express {key} with {len(options)} branches in a structural schema")
            base = _structural(options[0], defs)
            base.update(_structural(node, defs))
            return base
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "default" and value is None:
            continue
        if key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = _structural(value, defs)
            continue  # false: unknown fields are pruned by the API server
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    return out


def _model_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    return _structural(raw, raw.get("$defs", {}))


def _nodes(schema: Schema, path: str) -> Iterator[Schema]:
    """The schema nodes at a dotted path (``*`` = map value or list item)."""
    nodes = [schema]
    for part in path.split(".") if path else []:
        nxt = []
        for node in nodes:
            if part == "*":
                sub = node.get("items") or node.get("additionalProperties")
            else:
                sub = node.get("properties", {}).get(part)
            if not isinstance(sub, dict):
                raise KeyError(f"no schema node at {path!r} (stopped at {part!r})")
            nxt.append(sub)
        nodes = nxt
    yield from nodes


def _mark_conditions(schema: Schema) -> None:
    """Conditions are a map-list keyed by type (as metav1.Condition)."""
    status = schema["properties"]["status"]
    conditions = status["properties"].get("conditions")
    if conditions is not None:
        conditions["x-kubernetes-list-type"] = "map"
        conditions["x-kubernetes-list-map-keys"] = ["type"]


def version_schema(kind: type[Resource]) -> Schema:
    """The ``openAPIV3Schema`` of one kind."""
    name = kind.info.kind
    spec_model = _field_model(kind, "spec")
    status_cls = _field_model(kind, "status")

    schema: Schema = {
        "type": "object",
        "description": _kind_description(kind),
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of the object: newapi.openova.io/v1alpha1."},
            "kind": {"type": "string", "description": f"Kind of the object: {name}."},
            "metadata": {"type": "object"},
            "spec": _model_schema(spec_model),
            "status": _model_schema(status_cls),
        },
        "required": ["spec"],
    }
    schema["properties"]["status"]["description"] = (
        f"Observed state of the {name}, written by the operator only (status subresource)."
    )
    _mark_conditions(schema)
    for path, extra in _SCHEMA_PATCHES.get(name, {}).items():
        for node in _nodes(schema, path):
            node.update(copy.deepcopy(extra))
    for cel in CEL_RULES.get(name, ()):
        for node in _nodes(schema, cel.path):
            node.setdefault("x-kubernetes-validations", []).append(cel.manifest())
    return schema


def crd_name(kind: type[Resource]) -> str:
    """``<plural>.<group>``, the CRD's metadata.name."""
    return f"{kind.info.plural}.{GROUP}"


def build_crd(kind: type[Resource]) -> dict[str, Any]:
    """The CustomResourceDefinition (apiextensions.k8s.io/v1) of one kind."""
    info = kind.info
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": crd_name(kind),
            "labels": {"app.kubernetes.io/part-of": "newapi-operator"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(info.printer_columns),
                    "schema": {"openAPIV3Schema": version_schema(kind)},
                }
            ],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    """The three CRDs (NewAPIInstance, Channel, CustomerKey), in that order."""
    return [build_crd(kind) for kind in KINDS]


def crd_filename(crd: Mapping[str, Any]) -> str:
    """File name of a CRD manifest: ``<plural>.<group>.yaml``."""
    return f"{crd['metadata']['name']}.yaml"


def dump_yaml(obj: Any) -> str:
    """Deterministic YAML: sorted keys, block style, no line wrapping, trailing newline."""
    text = yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True, width=10_000)
    return text if text.endswith("\n") else text + "\n"


# --------------------------------------------------------------------------------------------
# Field reference
# --------------------------------------------------------------------------------------------


def _type_of(node: Schema) -> str:
    t = node.get("type", "")
    if t == "array":
        return f"[]{_type_of(node.get('items', {}))}"
    if t == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type_of(node['additionalProperties'])}"
    if node.get("format"):
        return f"{t} ({node['format']})"
    return str(t)


def _constraints(node: Schema) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    for key, label in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ):
        if key in node:
            parts.append(f"{label} {node[key]}")
    if "default" in node and node["default"] != {}:
        parts.append(f"default `{json.dumps(node['default'])}`")
    return "; ".join(parts)


def _cell(text: str) -> str:
    """Text for one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _field_rows(node: Schema, path: str, required: bool) -> Iterator[str]:
    desc = _cell(str(node.get("description", "")))
    extra = _constraints(node)
    cell = f"{desc} {'(' + extra + ')' if extra else ''}".strip()
    yield f"| `{path}` | {_type_of(node)} | {'yes' if required else ''} | {cell} |"
    req = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        yield from _field_rows(sub, f"{path}.{name}", name in req)
    items = node.get("items")
    if isinstance(items, dict) and "properties" in items:
        for name, sub in items["properties"].items():
            yield from _field_rows(sub, f"{path}[].{name}", name in set(items.get("required", [])))
    values = node.get("additionalProperties")
    if isinstance(values, dict) and "properties" in values:
        for name, sub in values["properties"].items():
            yield from _field_rows(sub, f"{path}.<key>.{name}", name in set(values.get("required", [])))


def render_reference(crds: list[dict[str, Any]]) -> str:
    """docs/api-reference.md: every field of every kind, its type, constraints and rules."""
    out = [
        "# API reference: newapi.openova.io/v1alpha1",
        "",
        "Generated by `newapi crds` from `operator/api/v1alpha1.py`; do not edit by hand.",
        "Money is an integer number of micro-credits (1 credit = 1,000,000 micro-credits).",
        "",
    ]
    for crd in crds:
        names = crd["spec"]["names"]
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        out += [
            f"## {names['kind']}",
            "",
            " ".join(schema["description"].split()),
            "",
            f"Plural `{names['plural']}`, short names {', '.join(f'`{s}`' for s in names['shortNames'])}, "
            f"category `{', '.join(names['categories'])}`, namespaced, status subresource.",
            "",
            "| Field | Type | Required | Description |",
            "|---|---|---|---|",
        ]
        for part in ("spec", "status"):
            out.extend(_field_rows(schema["properties"][part], part, part in schema.get("required", [])))
        rules = CEL_RULES.get(names["kind"], ())
        out += ["", "### Rules checked by the API server (CEL)", ""]
        if rules:
            out += ["| Rule | On | Message |", "|---|---|---|"]
            out += [f"| `{r.compliance_rule}` | `{r.path}` | {_cell(r.message)} |" for r in rules]
        else:
            out.append("None.")
        enforced = OPERATOR_ENFORCED.get(names["kind"], {})
        out += ["", "### Rules checked by the operator (they involve other objects)", ""]
        out += [f"- `{rule}`: {text}." for rule, text in enforced.items()] or ["None."]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def generated_files(
    out_dir: str | Path,
    *,
    docs_file: str | Path | None = None,
    kustomize_dir: str | Path | None = None,
) -> dict[Path, str]:
    """Every generated file and its content.

    ``out_dir`` is the ``crds/`` folder of a checkout; unless given, the reference goes to
    ``<out_dir>/../docs/api-reference.md`` and copies of the CRDs for the kustomize base to
    ``<out_dir>/../config/crd/bases/`` (kustomize does not load files outside a base).
    """
    out = Path(out_dir)
    docs = Path(docs_file) if docs_file is not None else out.parent / "docs" / "api-reference.md"
    bases = Path(kustomize_dir) if kustomize_dir is not None else out.parent / "config" / "crd" / "bases"
    crds = build_crds()
    files: dict[Path, str] = {}
    for crd in crds:
        text = dump_yaml(crd)
        files[out / crd_filename(crd)] = text
        files[bases / crd_filename(crd)] = text
    files[docs] = render_reference(crds)
    return files


def write_crds(
    out_dir: str | Path,
    check: bool = False,
    *,
    docs_file: str | Path | None = None,
    kustomize_dir: str | Path | None = None,
) -> list[str]:
    """Write the CRDs, their kustomize copies and the reference; return the files that changed.

    With ``check=True`` nothing is written and the result lists the files that differ from (or
    are missing in, or are stale in) the given locations. Stale ``*.<group>.yaml`` files in
    ``out_dir`` and the kustomize folder are removed when writing.
    """
    files = generated_files(out_dir, docs_file=docs_file, kustomize_dir=kustomize_dir)
    changed: list[str] = []
    for path, text in files.items():
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        changed.append(str(path))
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for folder in {p.parent for p in files if p.name.endswith(f".{GROUP}.yaml")}:
        if not folder.is_dir():
            continue
        for stale in sorted(folder.glob(f"*.{GROUP}.yaml")):
            if stale not in files:
                changed.append(str(stale))
                if not check:
                    stale.unlink()
    return changed
