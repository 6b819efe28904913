"""The routing table rendered from an instance and its bound channels (pure)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from newapi_gateway.routing_table import CONFIGMAP_LIMIT_BYTES, parse_table
from newapi_operator.api.v1alpha1 import NewAPIInstanceSpec
from newapi_operator.controller.binding import ChannelInput, bind
from newapi_operator.controller.routes import (
    GZIP_KEY,
    PLAIN_LIMIT,
    RoutingTableTooLarge,
    read_configmap_table,
    render_routes,
    upstream_credentials,
)

from .objects import byok, instance, openai, vllm

KEY = {"api-key": base64.b64encode(b"sk-upstream").decode()}


def _render(spec: dict[str, Any], *channels: dict[str, Any], secrets: dict[str, Any] | None = None) -> Any:
    ispec = NewAPIInstanceSpec.model_validate(spec["spec"])
    binding = bind("gw", ispec, [ChannelInput.from_body(c) for c in channels], secrets or {"openai-key": KEY})
    return binding, render_routes("gw", ispec, binding)


def test_table_carries_channels_policy_and_credential_names_and_parses_in_the_gateway() -> None:
    inst = instance(geo={"unknownCountry": "allow"}, aup={"enforcement": "per-channel"},
                    audit={"retentionDays": 90}, reseller={"operatorName": "ACME"})
    binding, routes = _render(inst, vllm("local"), openai("oai"), byok("bring"))
    table = parse_table(routes.document)  # the gateway's own parser and validation
    assert table.version == routes.version
    assert [c.name for c in table.channels] == ["bring", "local", "oai"]
    by_name = {c.name: c for c in table.channels}
    assert by_name["oai"].credential == "oai"
    assert by_name["local"].credential is None
    assert by_name["bring"].credential is None
    assert by_name["oai"].attestation.provider == "OpenAI"
    assert by_name["local"].attestation.owner == "platform team (own GPUs)"
    assert by_name["local"].model_mapping == {"qwen3-32b": "Qwen/Qwen3-32B"}
    assert by_name["oai"].pricing.input_per_million == 150000
    assert table.policy.geo.unknown_country == "allow"
    assert table.policy.aup.enforcement == "per-channel"
    assert table.policy.audit.retention_days == 90
    assert table.policy.reseller.operator_name == "ACME"
    assert set(table.policy.tiers) == {"free", "pro", "enterprise"}
    assert upstream_credentials(binding.bound) == {"oai": KEY["api-key"]}
    # compact: no whitespace, no defaults
    assert ": " not in routes.document
    assert "\n" not in routes.document
    assert '"weight"' not in routes.document


def test_version_is_a_content_hash() -> None:
    _, a = _render(instance(), vllm("local"), openai("oai"))
    _, b = _render(instance(), openai("oai"), vllm("local"))
    _, c = _render(instance(), vllm("local", weight=7), openai("oai"))
    assert a.version == b.version  # order of the input does not matter
    assert a.version != c.version


def test_allowed_channels_are_reduced_to_bound_ones() -> None:
    inst = instance(tiers={"pro": {"allowedChannels": ["local", "gone"]}})
    _, routes = _render(inst, vllm("local"), openai("oai"))
    assert routes.table.policy.tiers["pro"].allowed_channels == ["local"]
    assert routes.dropped_tiers == []


def test_a_tier_whose_allowed_channels_are_all_unbound_is_left_out_fail_closed() -> None:
    inst = instance(tiers={"pro": {"allowedChannels": ["oai"]}, "solo": {"allowedChannels": ["only-solo"]},
                           "other": {"allowedChannels": ["only-solo"]}})
    solo = vllm("only-solo", tiers=["pro"])
    binding, routes = _render(inst, openai("oai", secret="missing"), solo, vllm("local"))
    # oai is excluded (secret missing) -> tier pro has no bound channel -> pro is left out ->
    # only-solo served only pro -> excluded -> solo and other have no bound channel -> left out.
    assert sorted(routes.dropped_tiers) == ["other", "pro", "solo"]
    assert "pro" not in routes.table.policy.tiers
    assert {e.name: e.reason for e in binding.excluded} == {"oai": "SecretNotFound", "only-solo": "UnknownTier"}
    assert binding.bound_names == ["local"]
    assert any("spec.tiers.pro" in n and "refused" in n for n in routes.notes)
    parse_table(routes.document)


def _big_channel(i: int) -> dict[str, Any]:
    """A realistic commercial channel: three models, mappings, per-model prices, tiers, timeouts."""
    models = [f"model-{i}-a", f"model-{i}-b", f"model-{i}-c"]
    return openai(
        f"provider-channel-{i:04d}",
        secret=f"provider-key-{i % 50}",
        endpoint=f"https://llm-{i % 97}.provider.example.com/v1",
        models=models,
        modelMapping={m: f"{m}-2026-01-01" for m in models},
        priority=i % 5,
        weight=1 + i % 10,
        pricing={"inputPerMillion": 150000 + i, "outputPerMillion": 600000 + i,
                 "models": {models[0]: {"inputPerMillion": 1000 + i, "outputPerMillion": 2000 + i}}},
        timeouts={"connectMs": 3000, "readMs": 120000},
        attestation={"kind": "commercial-contract", "accountId": f"acct-{i}", "contractRef": f"contracts/p-{i}"},
    )


def test_two_thousand_channels_fit_a_configmap() -> None:
    channels = [_big_channel(i) for i in range(2000)]
    secrets = {f"provider-key-{i}": KEY for i in range(50)}
    binding, routes = _render(instance(), *channels, secrets=secrets)
    assert len(binding.bound) == 2000
    assert routes.size > PLAIN_LIMIT  # these channels are heavy: the plain JSON would not fit ...
    data, binary = routes.configmap_content()
    assert data == {}
    assert set(binary) == {GZIP_KEY}
    assert routes.stored_size < CONFIGMAP_LIMIT_BYTES
    document = read_configmap_table(data, binary)
    assert document == routes.document
    assert len(parse_table(document).channels) == 2000
    assert routes.configmap_content() == (data, binary)  # deterministic bytes: no spurious rewrites
    print(f"2000 channels: {routes.size} bytes of JSON, {routes.stored_size} bytes stored "
          f"({routes.stored_size / CONFIGMAP_LIMIT_BYTES:.0%} of a ConfigMap)")


def test_small_tables_stay_readable() -> None:
    _, routes = _render(instance(), vllm("local"))
    data, binary = routes.configmap_content()
    assert data == {"routes.json": routes.document}
    assert binary == {}
    assert read_configmap_table(data, binary) == routes.document


def test_a_table_over_the_limit_even_compressed_is_refused_with_what_to_do() -> None:
    import random

    rng = random.Random(7)  # incompressible model names
    models = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(60)) for _ in range(30000)]
    channels = [vllm(f"ch-{i:03d}", models=models[i * 200:(i + 1) * 200], modelMapping={}) for i in range(150)]
    with pytest.raises(RoutingTableTooLarge, match="split the channels across instances"):
        _render(instance(), *channels)


def test_document_is_json_with_schema_and_version() -> None:
    _, routes = _render(instance(), vllm("local"))
    doc = json.loads(routes.document)
    assert doc["schemaVersion"] == 1
    assert doc["instance"] == "gw"
    assert doc["version"] == routes.version
