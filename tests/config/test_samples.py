"""config/samples: the seed's tiers and channels, valid against the CRDs and the compliance rules,
usable both with `kubectl apply -f config/samples/` and `kubectl apply -k config/samples`."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from newapi_operator import crdgen
from newapi_operator.api import compliance
from newapi_operator.api.v1alpha1 import Channel, CustomerKey, NewAPIInstance

SAMPLES = Path(__file__).resolve().parents[2] / "config" / "samples"
CRDS = {c["spec"]["names"]["kind"]: c for c in crdgen.build_crds()}

#: The blueprint's routing table (seed 002): requested model -> model served, per tier.
SEED_ROUTING = {
    "free": {"claude-3-opus": "qwen3-32b", "claude-3-sonnet": "qwen3-32b", "gpt-4": "qwen3-32b"},
    "pro": {
        "claude-3-opus": "claude-3-haiku",
        "claude-3-sonnet": "claude-3-haiku",
        "claude-3-haiku": "claude-3-haiku",
        "gpt-4": "qwen3-32b",
    },
    "enterprise": {},
}


def sample_objects() -> list[dict[str, Any]]:
    """The objects `kubectl apply -f config/samples/` would apply (*.yaml, *.yml, *.json)."""
    out = []
    for path in sorted(SAMPLES.iterdir()):
        if path.suffix in (".yaml", ".yml", ".json"):
            out += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_apply_f_and_apply_k_see_the_same_objects(built: dict[str, list[dict[str, Any]]]) -> None:
    objects = sample_objects()
    assert all("apiVersion" in o and "kind" in o and o["kind"] != "Kustomization" for o in objects)
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, objects)) == sorted(map(key, built["samples"]))


def test_samples_validate_against_their_crds(crd_check: ModuleType) -> None:
    for obj in sample_objects():
        if obj["kind"] in CRDS:
            assert crd_check.crd_errors(CRDS[obj["kind"]], obj) == [], obj["metadata"]["name"]


def test_samples_pass_every_compliance_rule() -> None:
    objects = sample_objects()
    [instance_obj] = by_kind(objects, "NewAPIInstance")
    instance = NewAPIInstance.model_validate(instance_obj)
    assert compliance.check_instance(instance.spec) == []
    channels = [(o["metadata"]["name"], Channel.model_validate(o).spec) for o in by_kind(objects, "Channel")]
    for obj in by_kind(objects, "Channel"):
        assert compliance.validate_object(obj) == [], obj["metadata"]["name"]
    assert compliance.check_binding(instance.spec, channels) == []
    [key] = by_kind(objects, "CustomerKey")
    assert compliance.check_customer_key(CustomerKey.model_validate(key).spec, instance.spec) == []


def test_samples_carry_the_seed_tiers_and_channels() -> None:
    objects = sample_objects()
    spec = NewAPIInstance.model_validate(by_kind(objects, "NewAPIInstance")[0]).spec
    assert set(spec.tiers) == {"free", "pro", "enterprise"}
    free, pro, enterprise = spec.tiers["free"], spec.tiers["pro"], spec.tiers["enterprise"]
    assert (free.daily_request_quota, free.free) == (10, True)
    assert (pro.daily_request_quota, pro.free) == (1000, False)
    assert (enterprise.daily_request_quota, enterprise.unlimited_credit) == (None, True)
    for name, routing in SEED_ROUTING.items():
        assert spec.tiers[name].model_downgrades == routing, name

    channels = {o["metadata"]["name"]: Channel.model_validate(o).spec for o in by_kind(objects, "Channel")}
    assert sorted(c.type for c in channels.values()) == ["byok-passthrough", "openai-compatible", "vllm"]
    vllm = next(c for c in channels.values() if c.type == "vllm")
    assert any("qwen" in m for m in vllm.models)
    # Free traffic only ever reaches in-cluster channels.
    assert all(channels[n].type == "vllm" for n in free.allowed_channels)
    # Every downgrade target is served by a channel the tier may use.
    for tier_name, tier in spec.tiers.items():
        usable = [c for n, c in channels.items() if compliance.channel_serves_tier(c, tier_name, tier, n)]
        for target in tier.model_downgrades.values():
            assert any(target in c.models for c in usable), (tier_name, target)
    commercial = next(c for c in channels.values() if c.type == "openai-compatible")
    assert commercial.secret_ref is not None
    secrets = {o["metadata"]["name"]: o for o in by_kind(objects, "Secret")}
    assert commercial.secret_ref.key in secrets[commercial.secret_ref.name]["stringData"]

    [key] = by_kind(objects, "CustomerKey")
    key_spec = CustomerKey.model_validate(key).spec
    assert key_spec.instance_ref.name == by_kind(objects, "NewAPIInstance")[0]["metadata"]["name"]
    assert key_spec.credit_grant is not None
    assert 0 < key_spec.credit_grant <= 10_000_000
