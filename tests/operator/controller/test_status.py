"""Status documents of Channels and instances (pure)."""

from __future__ import annotations

from typing import Any

from newapi_operator.controller.binding import ChannelInput, evaluate_channel
from newapi_operator.controller.channel_status import channel_status
from newapi_operator.controller.instance_status import InstanceOutcome, instance_status

from .objects import openai, vllm

NOW = "2026-01-01T00:00:00Z"


def _conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_routable_channel() -> None:
    st = channel_status(evaluate_channel(ChannelInput.from_body(vllm("a")), {}), 4, None, NOW)
    assert _conds(st) == {"Attested": ("True", "Attested"), "Valid": ("True", "Valid"), "Ready": ("True", "Routable")}
    assert st["observedGeneration"] == 4
    assert st["attested"] is True
    assert st["modelsServed"] == ["qwen3-32b"]
    assert all(c["observedGeneration"] == 4 and c["lastTransitionTime"] == NOW for c in st["conditions"])


def test_unattested_channel() -> None:
    body = openai("a")
    body["spec"]["attestation"] = {"kind": "commercial-contract", "accountId": "x"}
    st = channel_status(evaluate_channel(ChannelInput.from_body(body), {"openai-key": {"api-key": "eA=="}}), 1, None)
    conds = _conds(st)
    assert conds["Attested"] == ("False", "AttestationInvalid")
    assert conds["Valid"] == ("True", "Valid")
    assert conds["Ready"] == ("False", "Unattested")
    assert st["attested"] is False
    message = next(c["message"] for c in st["conditions"] if c["type"] == "Attested")
    assert "spec.attestation.contractRef" in message


def test_invalid_spec_and_missing_secret() -> None:
    bad = vllm("a")
    bad["spec"]["models"] = []
    st = channel_status(evaluate_channel(ChannelInput.from_body(bad), {}), 1, None)
    assert _conds(st) == {"Attested": ("Unknown", "SpecInvalid"), "Valid": ("False", "SpecInvalid"),
                          "Ready": ("False", "Invalid")}
    st = channel_status(evaluate_channel(ChannelInput.from_body(openai("b")), {"openai-key": None}), 1, None)
    assert _conds(st)["Ready"] == ("False", "SecretNotFound")


def test_status_is_stable_when_nothing_changes() -> None:
    verdict = evaluate_channel(ChannelInput.from_body(vllm("a")), {})
    first = channel_status(verdict, 1, None, NOW)
    assert channel_status(verdict, 1, first, "2030-01-01T00:00:00Z") == first


def test_instance_ready_degraded_reasons() -> None:
    o = InstanceOutcome(2, 3, ready_replicas=2, bound=["a"], routing_table_version="v1", external_secret="Skipped",
                        excluded=[{"name": "b", "reason": "SecretNotFound: x"}],
                        binding_problems=["spec.aup.enforcement: no"], tier_notes=["spec.tiers.pro: gone"])
    st = instance_status(o, None, NOW)
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("True", "Available")
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == ("True", "ChannelsExcluded")
    for part in ("b (SecretNotFound)", "spec.tiers.pro", "spec.aup.enforcement", "2/3 gateway replicas ready"):
        assert part in conds["Degraded"]["message"]
    assert st["boundChannels"] == ["a"]
    assert st["excludedChannels"] == o.excluded
    assert st["readyReplicas"] == 2
    assert st["routingTableVersion"] == "v1"
    assert st["observedGeneration"] == 2


def test_instance_progressing_and_as_expected() -> None:
    st = instance_status(InstanceOutcome(1, 1, routing_table_version="v"), None)
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds == {"Ready": ("False", "Progressing"), "Degraded": ("False", "AsExpected")}


def test_instance_error_keeps_the_last_rendered_facts() -> None:
    good = instance_status(InstanceOutcome(1, 1, ready_replicas=1, bound=["a"], routing_table_version="v1"), None)
    bad = instance_status(InstanceOutcome(2, 1, ready_replicas=1, error_reason="InvalidSpec",
                                          error_message="spec.geo: no"), good)
    conds = {c["type"]: (c["status"], c["reason"]) for c in bad["conditions"]}
    assert conds == {"Ready": ("False", "InvalidSpec"), "Degraded": ("True", "InvalidSpec")}
    assert bad["boundChannels"] == ["a"]
    assert bad["routingTableVersion"] == "v1"
