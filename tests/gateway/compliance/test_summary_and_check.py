"""The admin compliance summary (pure) and the checker's pure parts: Channel object rules, the table."""

from __future__ import annotations

import copy
from typing import Any

from newapi_gateway.compliance.check import Result, channel_object_problems, exit_code, render_table
from newapi_gateway.compliance.summary import compliance_summary

from .builders import channel, make_table


def test_summary_lists_attestation_and_policy() -> None:
    table = make_table([
        channel("claude", "anthropic", ["c"]),
        channel("oa", "openai-compatible", ["o"], attestation={"kind": "commercial-contract", "attested": False}),
        channel("bad-kind", "openai-compatible", ["b"], attestation={"kind": "in-cluster", "owner": "x"}),
        channel("local", "vllm", ["q"]),
        channel("byok", "byok-passthrough", ["k"]),
    ], {"audit": {"retentionDays": 90}, "reseller": {"operatorName": "ACME"}})
    doc = compliance_summary(table, {"oa": "credential oa-key missing"}, 200, geoip_database="/data/city.mmdb")
    by_name = {c["name"]: c for c in doc["channels"]}
    assert doc["unattestedChannels"] == ["bad-kind", "oa"]
    assert by_name["claude"]["attestation"] == {"kind": "commercial-contract", "attested": True,
                                                "provider": "Anthropic", "problem": None}
    assert "not attested" in by_name["oa"]["attestation"]["problem"]
    assert "does not fit" in by_name["bad-kind"]["attestation"]["problem"]
    assert by_name["oa"]["routable"] is False
    assert by_name["oa"]["unusableReason"]
    assert by_name["local"]["commercial"] is False
    assert by_name["local"]["attestation"]["provider"] is None
    assert doc["commercialProviders"] == ["Anthropic", "OpenAI"]
    assert doc["policy"]["geo"]["sanctionedRegions"] == ["IR", "KP", "SY", "CU", "RU-occupied-UA"]
    assert doc["policy"]["geo"]["geoipDatabase"] is True
    assert doc["policy"]["audit"] == {"enabled": True, "retentionDays": 90, "logPromptContent": False}
    assert doc["disclosure"]["status"] == 200
    text = repr(doc)
    assert "contract-7f3a" not in text
    assert "claude-key" not in text


def channel_object(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "newapi.openova.io/v1alpha1", "kind": "Channel",
        "metadata": {"name": "oa", "generation": 2},
        "spec": {"type": "openai-compatible", "endpoint": "https://api.openai.com/v1", "models": ["m"],
                 "secretRef": {"name": "s"},
                 "attestation": {"kind": "commercial-contract", "accountId": "acct", "contractRef": "c"}},
        "status": {"conditions": [
            {"type": "Attested", "status": "True", "reason": "Attested", "observedGeneration": 2},
            {"type": "Valid", "status": "True", "reason": "Valid", "observedGeneration": 2},
        ]},
    }
    base["spec"].update(spec)
    return base


def test_channel_object_rules() -> None:
    assert channel_object_problems(channel_object()) == []
    assert channel_object_problems(channel_object(enabled=False, attestation={"kind": "byok"})) == []
    no_contract = channel_object(attestation={"kind": "commercial-contract", "accountId": "acct"})
    assert any("contractRef" in p for p in channel_object_problems(no_contract))
    unattested = channel_object()
    unattested["status"]["conditions"][0].update(status="False", reason="AttestationInvalid", message="no")
    assert channel_object_problems(unattested) == ["Channel/oa: Attested=False (AttestationInvalid: no)"]
    stale = copy.deepcopy(channel_object())
    stale["metadata"]["generation"] = 3
    assert all("has not caught up" in p for p in channel_object_problems(stale))
    fresh = channel_object()
    del fresh["status"]
    assert channel_object_problems(fresh) == [
        "Channel/oa: no Attested condition (the operator has not reconciled it)",
        "Channel/oa: no Valid condition (the operator has not reconciled it)",
    ]


def test_table_and_exit_code() -> None:
    ok = [Result("attestation", "PASS", "fine"), Result("disclosure", "PASS", "listed")]
    assert exit_code(ok) == 0
    assert render_table(ok).endswith("compliance check passed")
    bad = [*ok, Result("sanctioned-regions", "FAIL", "IR: got 200"), Result("audit-log", "SKIP", "no key")]
    assert exit_code(bad) == 1
    text = render_table(bad)
    assert "sanctioned-regions  FAIL    IR: got 200" in text
    assert text.endswith("compliance check FAILED: sanctioned-regions, audit-log")


def test_probe_models_avoid_models_an_in_cluster_channel_also_serves() -> None:
    from newapi_gateway.compliance.check import _pick_model

    table = make_table([
        channel("local", "vllm", ["shared", "q"]),
        channel("oa", "openai-compatible", ["shared", "only-commercial"]),
        channel("byok", "byok-passthrough", ["k"]),
    ])
    doc = compliance_summary(table, {})
    assert _pick_model(doc, "commercial") == "only-commercial"
    assert _pick_model(doc, "byok") == "k"
    overlap = compliance_summary(make_table([channel("local", "vllm", ["s"]),
                                             channel("oa", "openai-compatible", ["s"])]), {})
    assert _pick_model(overlap, "commercial") == "s"  # nothing better: the check will say what it got
    assert _pick_model(compliance_summary(make_table([channel("local", "vllm", ["s"])]), {}), "commercial") is None
