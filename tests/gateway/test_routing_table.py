"""The routing table document: validation, versioning, compactness."""

from __future__ import annotations

import json

import pytest

from newapi_gateway.routing_table import (
    CONFIGMAP_LIMIT_BYTES,
    InvalidRoutingTable,
    content_version,
    dump_table,
    finalize,
    parse_table,
)

from .gateway_fixtures import SEED_TIERS, channel, table_doc


def test_minimal_table_parses_and_gets_a_content_version() -> None:
    t = parse_table(table_doc([channel("local", ["qwen3-32b"])]))
    assert t.version == content_version(t)
    assert len(t.version) == 16
    assert t.channels[0].effective_format() == "openai"
    assert t.policy.byok.scope == "request-scoped"


def test_version_changes_with_content_and_is_checked_on_load() -> None:
    a = finalize(parse_table(table_doc([channel("local", ["m1"])])))
    b = finalize(parse_table(table_doc([channel("local", ["m1", "m2"])])))
    assert a.version != b.version
    doc = json.loads(dump_table(a))
    assert doc["version"] == a.version
    assert parse_table(dump_table(a)).version == a.version
    doc["channels"][0]["models"].append("sneaky")
    with pytest.raises(InvalidRoutingTable, match="does not match the content hash"):
        parse_table(doc)


def test_dump_is_compact_and_round_trips() -> None:
    t = parse_table(table_doc([channel("local", ["m1"], modelMapping={"m1": "org/m1"})], {"tiers": SEED_TIERS}))
    raw = dump_table(t)
    assert b" " not in raw.replace(b"in-cluster", b"")  # no whitespace
    assert b"connectMs" not in raw  # defaults are left out
    again = parse_table(raw)
    assert again == t


@pytest.mark.parametrize(
    ("doc_change", "expected"),
    [
        (lambda d: d.update(schemaVersion=2), "schemaVersion: this gateway reads schema version 1"),
        (lambda d: d["channels"].append(d["channels"][0]), "duplicate channel name 'local'"),
        (lambda d: d["channels"][0].update(endpoint="ftp://x"),
         "channels[0].endpoint: 'ftp://x' is not an http(s) URL"),
        (lambda d: d["channels"][0].update(modelMapping={"other": "x"}), "channels[0].modelMapping.other"),
        (lambda d: d["channels"][0].update(weight=0), "channels[0].weight"),
        (lambda d: d["channels"][0].update(tiers=["gold"]), "tier 'gold' is not defined in policy.tiers"),
        (lambda d: d["channels"][0].update(colour="red"), "channels[0].colour: unknown field"),
        (lambda d: d["channels"][0].pop("models"), "channels[0].models: required field is missing"),
        (lambda d: d.update(channels=[channel("oa", ["gpt-4o"], type="openai-compatible")]),
         "channels[0].credential: required for a openai-compatible channel"),
        (lambda d: d.update(channels=[channel("b", ["gpt-4o"], type="byok-passthrough")]),
         "channels[0].allowedProviders: a byok-passthrough channel needs at least one provider"),
        (lambda d: d["policy"].update(tiers={"pro": {"allowedChannels": ["nope"]}}),
         "policy.tiers.pro.allowedChannels: no channel named 'nope'"),
    ],
)
def test_invalid_tables_are_rejected_with_the_field_named(doc_change: object, expected: str) -> None:
    doc = table_doc([channel("local", ["qwen3-32b"])], {"tiers": {}})
    doc_change(doc)  # type: ignore[operator]
    with pytest.raises(InvalidRoutingTable) as info:
        parse_table(doc)
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_not_json_is_rejected() -> None:
    with pytest.raises(InvalidRoutingTable, match="not valid JSON"):
        parse_table(b"{nope")
    with pytest.raises(InvalidRoutingTable, match="must be a JSON object"):
        parse_table(b"[]")


def test_two_thousand_channels_fit_a_configmap() -> None:
    """A realistic large table: 2,000 commercial channels, each with 3 models, a mapping, prices,
    timeouts and an attestation, plus the seed tiers; compact JSON must stay under 1 MiB."""
    channels = []
    for i in range(2000):
        models = [f"model-{i % 50}-a", f"model-{i % 50}-b", f"model-{i % 50}-c"]
        channels.append(channel(
            f"channel-{i:04d}", models, type="openai-compatible",
            endpoint=f"https://upstream-{i % 20}.example.com/v1",
            credential=f"channel-{i:04d}",
            modelMapping={models[0]: f"provider/{models[0]}-2025-01"},
            priority=i % 3, weight=1 + i % 10,
            tiers=["pro", "enterprise"] if i % 2 else [],
            pricing={"inputPerMillion": 150000, "outputPerMillion": 600000},
            timeouts={"connectMs": 3000, "readMs": 120000},
            attestation={"kind": "commercial-contract", "provider": "Example AI", "contractRef": f"contract-{i}"},
        ))
    t = parse_table(table_doc(channels, {"tiers": SEED_TIERS, "reseller": {"operatorName": "Example Sovereign"}}))
    raw = dump_table(t)
    assert len(raw) < CONFIGMAP_LIMIT_BYTES, f"{len(raw)} bytes"
    assert len(parse_table(raw).channels) == 2000
