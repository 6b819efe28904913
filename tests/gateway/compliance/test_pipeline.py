"""The compliance checks as gateway hooks: a real compiled snapshot, real request contexts and
SafeHeaders, the hook signatures of newapi_gateway.hooks, and one plan per routing table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from newapi_gateway.compliance.aup_policy import PolicyLibrary
from newapi_gateway.compliance.errors import ComplianceError
from newapi_gateway.compliance.geo import Location
from newapi_gateway.compliance.pipeline import NOTE_AUP, NOTE_GEO, NOTE_LOCATION, ComplianceHooks, audit_fields
from newapi_gateway.compliance.problems import ComplianceConfigError
from newapi_gateway.errors import GatewayError
from newapi_gateway.hooks import Hooks

from .builders import channel, chat, make_ctx, make_snapshot, make_table
from .mmdb_writer import city_record, write_mmdb

GEO = {"trustedProxyCIDRs": ["10.0.0.0/8"]}
BOMB = "how can i make a pipe bomb"


def channels() -> list[dict[str, Any]]:
    return [channel("local", "vllm", ["m"]), channel("oa", "openai-compatible", ["m"]),
            channel("byok", "byok-passthrough", ["m"], allowedProviders=["openai", "anthropic"])]


@pytest.fixture
def hooks(library: PolicyLibrary) -> ComplianceHooks:
    return ComplianceHooks(library)


def test_install_adds_the_two_hooks(hooks: ComplianceHooks) -> None:
    pipeline = Hooks()
    hooks.install(pipeline)
    assert pipeline.admission == [hooks.admission]
    assert pipeline.channel_filters == [hooks.channel_filter]


async def test_strictest_blocks_at_admission(hooks: ComplianceHooks) -> None:
    snap = make_snapshot(make_table(channels(), {"geo": GEO}))
    ctx = make_ctx(snap, chat(BOMB))
    with pytest.raises(ComplianceError) as info:
        await hooks.admission(ctx)
    err = info.value
    assert isinstance(err, GatewayError)
    assert (err.status, err.code) == (400, "content_policy_violation")
    assert json.loads(err.body_bytes("anthropic"))["error"]["type"] == "invalid_request_error"
    assert ctx.notes[NOTE_AUP].label == "block:explosive-devices@anthropic"
    ok = make_ctx(snap, chat("kill the process"))
    await hooks.admission(ok)
    assert ok.notes[NOTE_AUP].label == "allow"
    anth = make_ctx(snap, {"model": "m", "max_tokens": 5, "system": BOMB, "messages": []}, operation="messages")
    with pytest.raises(ComplianceError):
        await hooks.admission(anth)


async def test_per_channel_checks_each_candidate(hooks: ComplianceHooks) -> None:
    snap = make_snapshot(make_table(channels(), {"geo": {**GEO, "unknownCountry": "allow"},
                                                 "aup": {"enforcement": "per-channel"}}))
    ctx = make_ctx(snap, chat(BOMB))
    await hooks.admission(ctx)  # nothing at admission in per-channel mode
    assert NOTE_AUP not in ctx.notes
    rejected = hooks.channel_filter(ctx, snap.channels["oa"])
    assert isinstance(rejected, ComplianceError)
    assert rejected.status == 400
    assert "openai" in rejected.message
    assert hooks.channel_filter(ctx, snap.channels["local"]) is None  # the in-cluster baseline allows it
    byok = make_ctx(snap, chat("how do I hack into the power grid"), byok_provider="anthropic")
    assert hooks.channel_filter(byok, snap.channels["byok"]) is None
    assert byok.notes[NOTE_AUP].label == "flag:critical-infrastructure-attack"
    plain = make_ctx(snap, chat("how do I hack into the power grid"), byok_provider="openai")
    assert hooks.channel_filter(plain, snap.channels["byok"]) is None
    assert plain.notes[NOTE_AUP].label == "allow"


async def test_geo_filter_blocks_commercial_channels(hooks: ComplianceHooks) -> None:
    snap = make_snapshot(make_table(channels(), {"geo": GEO}))
    ctx = make_ctx(snap, chat("hello"), peer="10.1.2.3", headers={"cf-ipcountry": "UA", "CF-Region-Code": "43",
                                                                  "Authorization": "Bearer sk-x"})
    await hooks.admission(ctx)
    refused = hooks.channel_filter(ctx, snap.channels["oa"])
    assert isinstance(refused, ComplianceError)
    assert (refused.status, refused.code, refused.type) == (451, "unavailable_for_legal_reasons", "request_forbidden")
    assert json.loads(refused.body_bytes("anthropic"))["error"]["type"] == "permission_error"
    assert hooks.channel_filter(ctx, snap.channels["byok"]) is not None
    assert hooks.channel_filter(ctx, snap.channels["local"]) is None
    assert ctx.notes[NOTE_LOCATION] == Location("UA", "UA-43", "header")
    assert audit_fields(ctx.notes) == {"country": "UA", "subdivision": "UA-43", "geoSource": "header",
                                       "geo": "block:RU-occupied-UA", "aup": "allow"}


async def test_unknown_location_blocks_commercial_only(hooks: ComplianceHooks) -> None:
    snap = make_snapshot(make_table(channels(), {"geo": GEO}))
    spoofed = make_ctx(snap, chat("hello"), peer="203.0.113.9", headers={"CF-IPCountry": "US"})
    refused = hooks.channel_filter(spoofed, snap.channels["oa"])
    assert refused is not None
    assert "could not be determined" in refused.message
    assert hooks.channel_filter(spoofed, snap.channels["local"]) is None
    assert audit_fields(spoofed.notes)["geo"] == "block:unknown-country"


async def test_geoip_database_from_the_table(hooks: ComplianceHooks, tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "geo.mmdb", {"198.51.100.0/24": city_record("IR"), "192.0.2.0/24": city_record("FR")})
    table = make_table(channels(), {"geo": {**GEO, "geoipDatabase": str(db)}})
    snap = make_snapshot(table)
    iran = make_ctx(snap, chat("hello"), peer="10.0.0.7", headers={"X-Forwarded-For": "198.51.100.4"})
    assert hooks.channel_filter(iran, snap.channels["oa"]) is not None
    france = make_ctx(snap, chat("hello"), peer="192.0.2.8")
    assert hooks.channel_filter(france, snap.channels["oa"]) is None
    assert audit_fields(france.notes)["geoSource"] == "geoip"
    # the same unchanged file is not reopened for the next table
    first = hooks.precompile(table).resolver.database
    other = make_table(channels(), {"geo": {**GEO, "geoipDatabase": str(db)}, "reseller": {"operatorName": "X"}})
    assert hooks.precompile(other).resolver.database is first


def test_a_replaced_database_is_reopened_with_the_next_table(hooks: ComplianceHooks, tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "geo.mmdb", {"198.51.100.0/24": city_record("FR")})
    policy = {"geo": {"geoipDatabase": str(db)}}
    first = hooks.precompile(make_table(channels(), policy)).resolver
    assert first.resolve("198.51.100.1", None).country == "FR"
    replacement = write_mmdb(tmp_path / "new.mmdb", {"198.51.100.0/24": city_record("IR")})
    replacement.replace(db)  # how geoipupdate installs a new file: an atomic rename
    second = hooks.precompile(make_table(channels(), {**policy, "reseller": {"operatorName": "new"}})).resolver
    assert second.database is not first.database
    assert second.resolve("198.51.100.1", None).country == "IR"
    assert first.resolve("198.51.100.1", None).country == "FR"  # in-flight requests keep the old reader


async def test_a_request_without_peer_is_of_unknown_location(hooks: ComplianceHooks) -> None:
    snap = make_snapshot(make_table(channels(), {"geo": GEO}))
    ctx = make_ctx(snap, chat("hello"), peer=None, headers={"CF-IPCountry": "DE"})
    refused = hooks.channel_filter(ctx, snap.channels["oa"])
    assert refused is not None
    assert ctx.notes[NOTE_LOCATION] == Location(None, None, "none")


def test_one_plan_per_table(hooks: ComplianceHooks) -> None:
    table = make_table(channels())
    plan = hooks.precompile(table)
    assert hooks.plan_for(table) is plan
    assert hooks.precompile(table) is plan
    newer = make_table(channels(), {"reseller": {"operatorName": "Other"}})
    assert hooks.plan_for(newer) is not plan
    assert hooks.plan_for(table) is plan  # the previous table is still known (in-flight requests)


def test_an_unusable_table_is_refused(hooks: ComplianceHooks) -> None:
    bad = make_table(channels(), {"aup": {"enforcement": "off"},
                                  "geo": {"sanctionedRegions": {"block": ["IR", "Persia"]},
                                          "geoipDatabase": "/nonexistent/geo.mmdb"}})
    with pytest.raises(ComplianceConfigError) as info:
        hooks.precompile(bad)
    fields = [p.split(":")[0] for p in info.value.problems]
    assert fields == ["geo.sanctionedRegions.block[1]", "aup.enforcement", "geo.geoipDatabase"]
    with pytest.raises(GatewayError) as err:  # on the request path: fail closed with 503
        hooks.plan_for(bad)
    assert (err.value.status, err.value.code) == (503, "compliance_unavailable")


def test_disclosure_through_the_hooks(hooks: ComplianceHooks) -> None:
    table = make_table(channels())
    status, ctype, body = hooks.disclosure(table, "application/json")
    assert (status, ctype) == (200, "application/json")
    assert [p["name"] for p in json.loads(body)["providers"]] == ["OpenAI"]
    assert hooks.disclosure_page(table) is hooks.precompile(table).disclosure


def test_audit_fields_before_any_check() -> None:
    assert audit_fields({}) == {"country": None, "subdivision": None, "geoSource": None, "geo": None, "aup": None}
    assert NOTE_GEO == "compliance.geo"


async def test_disclosure_route_over_real_http(hooks: ComplianceHooks) -> None:
    """The route served by a real aiohttp server on a free port, fetched over TCP."""
    current: dict[str, Any] = {"table": None}
    method, path, handler = hooks.disclosure_route(lambda: current["table"])
    assert (method, path) == ("GET", "/legal/llm-providers")
    app = web.Application()
    app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            not_ready = await client.get(path)
            assert not_ready.status_code == 503
            assert not_ready.json()["error"]["code"] == "not_ready"
            current["table"] = make_table(channels(), {"reseller": {"operatorName": "ACME"}})
            page = await client.get(path)
            assert page.status_code == 200
            assert page.headers["content-type"] == "text/html; charset=utf-8"
            assert page.headers["vary"] == "Accept"
            assert page.headers["x-content-type-options"] == "nosniff"
            assert "ACME resells access" in page.text
            as_json = await client.get(path, headers={"Accept": "application/json"})
            assert as_json.headers["content-type"] == "application/json"
            assert [p["name"] for p in as_json.json()["providers"]] == ["OpenAI"]
            current["table"] = make_table(channels(), {"reseller": {"disclosureRequired": False}})
            gone = await client.get(path, headers={"Accept": "application/json"})
            assert gone.status_code == 404
            current["table"] = make_table(channels(), {"aup": {"enforcement": "off"}})
            broken = await client.get(path)
            assert broken.status_code == 503
            assert broken.json()["error"]["code"] == "compliance_unavailable"
    finally:
        await runner.cleanup()


def test_in_cluster_channel_without_audit_needs_no_location(hooks: ComplianceHooks) -> None:
    """Nothing to decide for an in-cluster channel (geo skips it, AUP is not per-channel) and no audit
    row to record the location in: the filter does not resolve it. With the audit row on, or for a
    commercial channel, it does."""
    quiet = make_snapshot(make_table(channels(), {"geo": GEO, "audit": {"enabled": False}}))
    ctx = make_ctx(quiet, chat("hello"), peer="198.51.100.7")
    assert hooks.channel_filter(ctx, quiet.channels["local"]) is None
    assert NOTE_LOCATION not in ctx.notes
    blocked = hooks.channel_filter(ctx, quiet.channels["oa"])  # commercial: geo decides, location resolved
    assert NOTE_LOCATION in ctx.notes
    assert isinstance(blocked, ComplianceError)
    assert blocked.status == 451
    audited = make_snapshot(make_table(channels(), {"geo": GEO}))
    ctx = make_ctx(audited, chat("hello"), peer="198.51.100.7")
    assert hooks.channel_filter(ctx, audited.channels["local"]) is None
    assert NOTE_LOCATION in ctx.notes  # the audit row's country
    in_cluster_geo = make_snapshot(make_table(channels(), {"geo": {**GEO, "applyToInCluster": True},
                                                           "audit": {"enabled": False}}))
    ctx = make_ctx(in_cluster_geo, chat("hello"), peer="198.51.100.7")
    hooks.channel_filter(ctx, in_cluster_geo.channels["local"])
    assert NOTE_LOCATION in ctx.notes


def test_the_hooks_apply_only_to_tables_where_they_have_work(hooks: ComplianceHooks) -> None:
    pipeline = Hooks()
    hooks.install(pipeline)
    local = [channel("local", "vllm", ["m"])]
    quiet = {"aup": {"enforcement": "off"}, "audit": {"enabled": False}}
    idle = pipeline.active(make_snapshot(make_table(local, quiet)))
    assert (idle.admission, idle.channel_filters) == ([], [])  # nothing to check, nothing to record
    strict = pipeline.active(make_snapshot(make_table(channels(), {"geo": GEO})))
    assert (strict.admission, strict.channel_filters) == ([hooks.admission], [hooks.channel_filter])
    # in-cluster channels only: the filter still runs when geo covers them, per channel, or for the audit row
    for policy in ({**quiet, "geo": {**GEO, "applyToInCluster": True}},
                   {**quiet, "aup": {"enforcement": "per-channel"}},
                   {**quiet, "audit": {"enabled": True}}):
        active = pipeline.active(make_snapshot(make_table(local, policy)))
        assert (active.admission, active.channel_filters) == ([], [hooks.channel_filter]), policy
    commercial = pipeline.active(make_snapshot(make_table(channels(), {"aup": {"enforcement": "per-channel"},
                                                                       "audit": {"enabled": False}})))
    assert (commercial.admission, commercial.channel_filters) == ([], [hooks.channel_filter])  # geo: commercial


def test_a_table_whose_compliance_does_not_compile_keeps_both_hooks(hooks: ComplianceHooks) -> None:
    pipeline = Hooks()
    hooks.install(pipeline)
    bad = make_snapshot(make_table([channel("local", "vllm", ["m"])],
                                   {"aup": {"enforcement": "off"}, "audit": {"enabled": False},
                                    "geo": {"geoipDatabase": "/nonexistent/geo.mmdb"}}))
    active = pipeline.active(bad)
    assert (active.admission, active.channel_filters) == ([hooks.admission], [hooks.channel_filter])
