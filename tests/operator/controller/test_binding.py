"""Which channels an instance binds, and why the others are excluded (pure)."""

from __future__ import annotations

import base64
from typing import Any

from newapi_operator.api.v1alpha1 import NewAPIInstanceSpec
from newapi_operator.controller.binding import ChannelInput, bind, evaluate_channel

from .objects import byok, instance, openai, vllm

KEY = {"api-key": base64.b64encode(b"sk-upstream").decode()}


def _spec(**spec: Any) -> NewAPIInstanceSpec:
    return NewAPIInstanceSpec.model_validate(instance(**spec)["spec"])


def _inputs(*bodies: dict[str, Any]) -> list[ChannelInput]:
    return [ChannelInput.from_body(b) for b in bodies]


def _reasons(binding: Any) -> dict[str, str]:
    return {e.name: e.reason for e in binding.excluded}


def test_valid_channels_are_bound_with_their_credentials() -> None:
    b = bind("gw", _spec(), _inputs(vllm("local"), openai("oai"), byok("bring")), {"openai-key": KEY})
    assert b.bound_names == ["bring", "local", "oai"]
    assert b.excluded == []
    creds = {c.name: c.credential for c in b.bound}
    assert creds == {"bring": None, "local": None, "oai": KEY["api-key"]}


def test_missing_secret_and_missing_key_exclude_with_reasons() -> None:
    b = bind("gw", _spec(), _inputs(openai("a", secret="nope"), openai("b", secret="other")),
             {"nope": None, "other": {"token": KEY["api-key"]}})
    assert _reasons(b) == {"a": "SecretNotFound", "b": "SecretKeyNotFound"}
    message = {e.name: e.message for e in b.excluded}["b"]
    assert "'api-key'" in message
    assert "token" in message


def test_disabled_unattested_and_invalid_channels_are_excluded() -> None:
    disabled = vllm("off", enabled=False)
    unattested = vllm("anon")
    unattested["spec"]["attestation"] = {"kind": "in-cluster"}  # no owner
    wrong_kind = openai("mis", attestation={"kind": "in-cluster", "owner": "x"})
    no_endpoint = vllm("noend")
    del no_endpoint["spec"]["endpoint"]
    b = bind("gw", _spec(), _inputs(disabled, unattested, wrong_kind, no_endpoint), {"openai-key": KEY})
    assert _reasons(b) == {"off": "Disabled", "anon": "Unattested", "mis": "Unattested", "noend": "Invalid"}
    assert "spec.attestation.owner" in {e.name: e.message for e in b.excluded}["anon"]
    assert "spec.endpoint" in {e.name: e.message for e in b.excluded}["noend"]


def test_schema_errors_name_the_wire_field() -> None:
    bad = vllm("bad", weight=0)
    verdict = evaluate_channel(ChannelInput.from_body(bad), {})
    assert not verdict.valid
    why = verdict.exclusion()
    assert why is not None
    assert why[0] == "Invalid"
    assert "spec.weight" in why[1]


def test_selector_and_deletion_decide_what_is_considered_at_all() -> None:
    spec = _spec(channelSelector={"matchLabels": {"team": "a"}})
    going = vllm("going", labels={"team": "a"})
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    b = bind("gw", spec, _inputs(vllm("mine", labels={"team": "a"}), vllm("theirs", labels={"team": "b"}), going), {})
    assert b.bound_names == ["mine"]
    assert b.excluded == []  # channels of other instances are not "excluded", just not ours


def test_match_expressions() -> None:
    spec = _spec(channelSelector={"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["lab"]}]})
    b = bind("gw", spec, _inputs(vllm("prod", labels={"tier": "prod"}), vllm("lab", labels={"tier": "lab"}),
                                 vllm("plain")), {})
    assert b.bound_names == ["plain", "prod"]


def test_unknown_tier_and_invalid_route_exclude() -> None:
    typo = vllm("typo", tiers=["proo"])
    mapping = vllm("mapping", modelMapping={"not-listed": "x"})
    badurl = vllm("badurl", endpoint="vllm.models.svc:8000")
    b = bind("gw", _spec(), _inputs(typo, mapping, badurl), {})
    assert _reasons(b) == {"typo": "UnknownTier", "mapping": "InvalidRoute", "badurl": "InvalidRoute"}
    messages = {e.name: e.message for e in b.excluded}
    assert "'proo'" in messages["typo"]
    assert "free, pro, enterprise" in messages["typo"].replace("enterprise, free, pro",
                                                                                                "free, pro, enterprise")
    assert messages["mapping"].startswith("spec.modelMapping.not-listed")
    assert "spec.endpoint" in messages["badurl"]


def test_commercial_channel_serving_a_free_tier_is_excluded_by_the_binding_rule() -> None:
    b = bind("gw", _spec(), _inputs(openai("oai", tiers=["free", "pro"]), vllm("local")), {"openai-key": KEY})
    assert b.bound_names == ["local"]
    assert _reasons(b) == {"oai": "BindingRule"}
    assert "free/promotional" in b.excluded[0].message


def test_aup_off_excludes_every_commercial_channel_and_reports_the_instance() -> None:
    b = bind("gw", _spec(aup={"enforcement": "off"}), _inputs(openai("oai"), vllm("local"), byok("bring")),
             {"openai-key": KEY})
    assert b.bound_names == ["bring", "local"]
    assert _reasons(b) == {"oai": "BindingRule"}
    assert any("spec.aup.enforcement" in p for p in b.problems)


def test_free_tier_listing_a_commercial_channel_is_an_instance_problem_not_an_exclusion() -> None:
    spec = _spec(tiers={"free": {"free": True, "allowedChannels": ["oai", "local"]}})
    b = bind("gw", spec, _inputs(openai("oai", tiers=[]), vllm("local")), {"openai-key": KEY})
    assert b.bound_names == ["local", "oai"]
    assert any("spec.tiers.free.allowedChannels" in p for p in b.problems)
