"""The admission rules (pure): single-object rules deny; cross-object rules deny the object at fault."""

from __future__ import annotations

from newapi_operator.controller.webhook import needs_review, review

from .objects import customer_key, instance, openai, vllm


def test_valid_objects_are_admitted() -> None:
    assert review("Channel", vllm("a"), instances=[instance()]) == ([], [])
    assert review("NewAPIInstance", instance(), channels=[vllm("a"), openai("b")]) == ([], [])
    assert review("CustomerKey", customer_key("k"), instances=[instance()]) == ([], [])


def test_single_object_rules_deny() -> None:
    bad = openai("a")
    del bad["spec"]["secretRef"]
    errors, _ = review("Channel", bad)
    assert any("spec.secretRef" in e for e in errors)
    sub = vllm("b", type="subscription-bypass")
    errors, _ = review("Channel", sub)
    assert any("reselling subscription-tier capacity" in e for e in errors)
    relaxed = instance(geo={"sanctionedRegions": {"block": ["IR"]}})
    errors, _ = review("NewAPIInstance", relaxed)
    assert any("spec.geo.sanctionedRegions.block" in e for e in errors)


def test_a_channel_serving_a_free_tier_of_a_binding_instance_is_denied() -> None:
    errors, _ = review("Channel", openai("a", tiers=["free"]), instances=[instance()])
    assert errors
    assert "NewAPIInstance gw would bind this channel" in errors[0]
    assert "free" in errors[0]
    other = instance(channelSelector={"matchLabels": {"team": "b"}})
    assert review("Channel", openai("a", tiers=["free"]), instances=[other]) == ([], [])


def test_instance_turning_aup_off_with_commercial_channels_is_denied() -> None:
    errors, _ = review("NewAPIInstance", instance(aup={"enforcement": "off"}), channels=[openai("oai"), vllm("v")])
    assert any("spec.aup.enforcement" in e and "oai" in e for e in errors)
    assert review("NewAPIInstance", instance(aup={"enforcement": "off"}), channels=[vllm("v")]) == ([], [])


def test_instance_making_a_tier_free_warns_about_channels_it_would_exclude() -> None:
    errors, warnings = review("NewAPIInstance", instance(), channels=[openai("oai", tiers=["free"])])
    assert errors == []
    assert warnings
    assert "Channel/oai" in warnings[0]


def test_customer_key_against_its_instance() -> None:
    errors, _ = review("CustomerKey", customer_key("k", tier="gold"), instances=[instance()])
    assert any("spec.tier" in e and "gold" in e for e in errors)
    errors, _ = review("CustomerKey", customer_key("k", creditGrant=None, spendingCap={}), instances=[instance()])
    assert any("spec.creditGrant" in e for e in errors)
    errors, warnings = review("CustomerKey", customer_key("k", instance_name="missing"), instances=[instance()])
    assert errors == []
    assert "does not exist" in warnings[0]


def test_only_spec_and_label_changes_are_reviewed() -> None:
    old = vllm("a")
    assert needs_review(None, old)
    kopf_patch = {**old, "metadata": {**old["metadata"], "finalizers": ["newapi.openova.io/finalizer"],
                                      "annotations": {"newapi.openova.io/x": "1"}}}
    assert not needs_review(old, kopf_patch)
    deleting = {**old, "metadata": {**old["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert not needs_review(old, deleting)
    assert needs_review(old, {**old, "spec": {**old["spec"], "weight": 3}})
    assert needs_review(old, {**old, "metadata": {**old["metadata"], "labels": {"team": "b"}}})
