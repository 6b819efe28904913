"""Sanctioned regions: policy compilation, location resolution (trusted headers, X-Forwarded-For,
a real MaxMind-format database), the pure decision, and the 451 bodies as the SDKs parse them."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from newapi_gateway.compliance.errors import geo_error, geo_error_body
from newapi_gateway.compliance.geo import (
    ALLOW,
    BLOCK_UNKNOWN,
    OCCUPIED_UA_SUBDIVISIONS,
    UNKNOWN,
    GeoPolicy,
    GeoPolicyError,
    GeoResolver,
    Location,
    TrustedProxies,
    compile_geo_policy,
    decide,
    forwarded_client,
    parse_country_value,
    parse_ip,
    parse_region_value,
)
from newapi_gateway.compliance.geoip import GeoIPDatabase, GeoIPDatabaseError, open_geoip_database, record_location
from newapi_operator.api.v1alpha1 import DEFAULT_SANCTIONED_REGIONS, GeoSpec

from .builders import json_response
from .mmdb_writer import city_record, write_mmdb

TRUSTED = ["10.0.0.0/8", "fd00::/8", "192.168.7.7"]


def policy(**kw: Any) -> GeoPolicy:
    spec = GeoSpec.model_validate({"trustedProxyCIDRs": TRUSTED, **kw})
    return compile_geo_policy(spec)


class Ch:
    """A channel as decide() sees it."""

    def __init__(self, commercial: bool) -> None:
        self.commercial = commercial


COMMERCIAL, IN_CLUSTER = Ch(True), Ch(False)


# --- compilation -----------------------------------------------------------------------------------


def test_default_policy_blocks_the_baseline() -> None:
    geo = compile_geo_policy(GeoSpec())
    assert set(geo.country_blocks) == {"IR", "KP", "SY", "CU"}
    assert set(geo.subdivision_blocks) == set(OCCUPIED_UA_SUBDIVISIONS) == {"UA-43", "UA-40", "UA-14", "UA-09", "UA-23"}
    assert all(d.region == "RU-occupied-UA" and not d.allowed for d in geo.subdivision_blocks.values())
    assert geo.blocked == tuple(DEFAULT_SANCTIONED_REGIONS)
    assert geo.unknown_block is True
    assert geo.apply_to_in_cluster is False
    assert geo.country_headers == ("CF-IPCountry", "X-Country-Code")
    assert not geo.trusted_proxies
    assert geo.geoip_database is None


def test_entries_are_case_insensitive_and_subdivisions_can_be_listed() -> None:
    geo = policy(sanctionedRegions={"block": ["ir", " kp ", "ru-occupied-ua", "ua-65", "RU"], "allowRelaxation": True,
                                    "justification": "test"})
    assert set(geo.country_blocks) == {"IR", "KP", "RU"}
    assert geo.subdivision_blocks["UA-65"].region == "UA-65"
    assert geo.subdivision_blocks["UA-43"].region == "RU-occupied-UA"
    assert geo.blocked == ("IR", "KP", "RU-occupied-UA", "UA-65", "RU")


def test_every_unusable_entry_is_reported() -> None:
    spec = GeoSpec.model_validate({
        "sanctionedRegions": {"block": ["IR", "Iran", "UA-", "occupied"]},
        "trustedProxyCIDRs": ["10.0.0.0/8", "10.0.0.0/33", "proxy.internal"],
    })
    with pytest.raises(GeoPolicyError) as info:
        compile_geo_policy(spec)
    problems = info.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "geo.sanctionedRegions.block[1]", "geo.sanctionedRegions.block[2]", "geo.sanctionedRegions.block[3]",
        "geo.trustedProxyCIDRs[1]", "geo.trustedProxyCIDRs[2]",
    ]
    assert "RU-occupied-UA" in problems[0]  # the message lists the named regions
    assert "10.0.0.0/8" in problems[3]  # and shows the expected form


def test_trusted_proxies_match_v4_v6_single_hosts_and_several_prefix_lengths() -> None:
    tp = TrustedProxies(ipaddress.ip_network(n, strict=False) for n in [*TRUSTED, "172.16.0.0/12", "2001:db8:aa::/48"])
    inside = ["10.0.0.0", "10.255.255.255", "172.31.255.254", "192.168.7.7", "fd00::1", "fdff:ffff::1",
              "2001:db8:aa:ffff::1"]
    outside = ["11.0.0.0", "9.255.255.255", "172.32.0.0", "192.168.7.8", "fe80::1", "2001:db8:ab::1", "::ffff:a00:1"]
    for a in inside:
        assert ipaddress.ip_address(a) in tp, a
    for a in outside:
        assert ipaddress.ip_address(a) not in tp, a
    assert not TrustedProxies([])


# --- parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("203.0.113.9", "203.0.113.9"),
    (" 203.0.113.9 ", "203.0.113.9"),
    ("203.0.113.9:4711", "203.0.113.9"),
    ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]:443", "2001:db8::1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("::ffff:198.51.100.7", "198.51.100.7"),  # IPv4-mapped becomes IPv4
    ("fe80::1%eth0", "fe80::1%eth0"),
    ("unknown", None),
    ("", None),
    (None, None),
    ("300.1.1.1", None),
    ("[2001:db8::1", None),
])
def test_parse_ip(text: str | None, expected: str | None) -> None:
    got = parse_ip(text)
    assert (str(got) if got is not None else None) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("IR", ("IR", None)),
    (" ir ", ("IR", None)),
    ("UA-43", ("UA", "UA-43")),
    ("ua-43", ("UA", "UA-43")),
    ("GB-ENG", ("GB", "GB-ENG")),
    ("XX", None),  # Cloudflare: no country data
    ("T1", None),  # Cloudflare: Tor
    ("A1", None),
    ("", None),
    ("USA", None),
    ("U1", None),
    ("UA-", None),
    ("UA-1234", None),
    ("I R", None),
])
def test_parse_country_value(value: str, expected: tuple[str, str | None] | None) -> None:
    assert parse_country_value(value) == expected


@pytest.mark.parametrize(("value", "country", "expected"), [
    ("43", "UA", "UA-43"),
    ("UA-43", "UA", "UA-43"),
    (" ua-09 ", "UA", "UA-09"),
    ("CA", "US", "US-CA"),
    ("RU-43", "UA", None),  # another country's prefix: ignored
    ("", "UA", None),
    ("4/3", "UA", None),
])
def test_parse_region_value(value: str, country: str, expected: str | None) -> None:
    assert parse_region_value(value, country) == expected


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(("xff", "expected"), [
    (None, "10.1.1.1"),  # no header: the peer
    ("198.51.100.7", "198.51.100.7"),
    ("1.1.1.1, 198.51.100.7", "198.51.100.7"),  # the client wrote 1.1.1.1 itself: ignored
    ("1.1.1.1, 198.51.100.7, 10.2.2.2", "198.51.100.7"),  # trusted hops are skipped
    ("198.51.100.7,10.2.2.2, fd00::5", "198.51.100.7"),
    ("10.3.3.3, 10.2.2.2", "10.3.3.3"),  # all trusted: the leftmost
    ("garbage, 198.51.100.7", "198.51.100.7"),  # malformed entries left of the client do not matter
    ("198.51.100.7, garbage", None),  # the deciding entry is malformed: unknown
    ("198.51.100.7:5555", "198.51.100.7"),
    ("[2001:db8::9]:5555", "2001:db8::9"),
])
def test_forwarded_client_walks_from_the_right(xff: str | None, expected: str | None) -> None:
    tp = policy().trusted_proxies
    got = forwarded_client(_ip("10.1.1.1"), xff, tp)
    assert (str(got) if got is not None else None) == expected


# --- decision ---------------------------------------------------------------------------------------


def test_decide_commercial_channels() -> None:
    geo = policy()
    for country in ("IR", "KP", "SY", "CU"):
        d = decide(geo, Location(country, None, "header"), COMMERCIAL)
        assert not d.allowed
        assert d.reason == "sanctioned_region"
        assert d.region == country
        assert d.label == f"block:{country}"
    assert decide(geo, Location("DE", "DE-BE", "geoip"), COMMERCIAL) is ALLOW
    assert decide(geo, UNKNOWN, COMMERCIAL) is BLOCK_UNKNOWN
    assert BLOCK_UNKNOWN.label == "block:unknown-country"
    assert ALLOW.label == "allow"


@pytest.mark.parametrize("subdivision", sorted(OCCUPIED_UA_SUBDIVISIONS))
def test_occupied_ukraine_is_resolved_from_subdivisions(subdivision: str) -> None:
    d = decide(policy(), Location("UA", subdivision, "geoip"), COMMERCIAL)
    assert not d.allowed
    assert d.region == "RU-occupied-UA"


def test_ukraine_without_subdivision_or_elsewhere_is_not_blocked() -> None:
    geo = policy()
    assert decide(geo, Location("UA", None, "header"), COMMERCIAL) is ALLOW  # documented approximation
    assert decide(geo, Location("UA", "UA-46", "geoip"), COMMERCIAL) is ALLOW  # Lviv
    assert decide(geo, Location("UA", "UA-65", "geoip"), COMMERCIAL) is ALLOW  # Kherson: not in the default list
    extended = policy(sanctionedRegions={"block": [*DEFAULT_SANCTIONED_REGIONS, "UA-65"]})
    assert decide(extended, Location("UA", "UA-65", "geoip"), COMMERCIAL).region == "UA-65"


def test_unknown_country_can_be_allowed() -> None:
    geo = policy(unknownCountry="allow")
    assert decide(geo, UNKNOWN, COMMERCIAL) is ALLOW
    assert not decide(geo, Location("IR"), COMMERCIAL).allowed


def test_in_cluster_channels_follow_apply_to_in_cluster() -> None:
    off = policy()
    for loc in (Location("IR"), Location("UA", "UA-43"), UNKNOWN):
        assert decide(off, loc, IN_CLUSTER) is ALLOW
    on = policy(applyToInCluster=True)
    assert decide(on, Location("IR"), IN_CLUSTER).region == "IR"
    assert decide(on, Location("UA", "UA-43"), IN_CLUSTER).region == "RU-occupied-UA"
    assert decide(on, UNKNOWN, IN_CLUSTER) is ALLOW  # unknownCountry concerns commercial channels only
    assert decide(on, Location("FR"), IN_CLUSTER) is ALLOW


def test_decide_accepts_routing_table_channels() -> None:
    from .builders import channel, make_snapshot, make_table

    table = make_table([channel("local"), channel("oa", "openai-compatible"), channel("byok", "byok-passthrough")])
    snap = make_snapshot(table)
    geo = policy()
    where = Location("IR")
    assert decide(geo, where, snap.channels["local"]) is ALLOW
    assert not decide(geo, where, snap.channels["oa"]).allowed
    assert not decide(geo, where, snap.channels["byok"]).allowed  # BYOK reaches a Western provider too
    assert not decide(geo, where, table.channels[1]).allowed  # a ChannelRoute works as well


# --- resolution from headers ------------------------------------------------------------------------


def test_headers_from_a_trusted_peer_are_believed() -> None:
    r = GeoResolver(policy())
    assert r.resolve("10.9.9.9", {"CF-IPCountry": "IR"}) == Location("IR", None, "header")
    assert r.resolve("fd00::abcd", {"X-Country-Code": "kp"}) == Location("KP", None, "header")
    assert r.resolve("::ffff:10.0.0.1", {"CF-IPCountry": "SY"}) == Location("SY", None, "header")
    assert r.resolve("192.168.7.7", {"CF-IPCountry": "CU"}).country == "CU"


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    r = GeoResolver(policy())
    for peer in ("203.0.113.50", "192.168.7.8", "2001:db8::1", "garbage", None):
        assert r.resolve(peer, {"CF-IPCountry": "US", "X-Country-Code": "US"}) is UNKNOWN


def test_no_trusted_proxies_means_no_header_is_believed() -> None:
    r = GeoResolver(compile_geo_policy(GeoSpec()))
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "US"}) is UNKNOWN


def test_first_configured_header_with_a_country_wins() -> None:
    r = GeoResolver(policy(countryHeaders=["X-Country-Code", "CF-IPCountry"]))
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "IR", "X-Country-Code": "DE"}).country == "DE"
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "IR", "X-Country-Code": "XX"}).country == "IR"
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "IR", "X-Country-Code": ""}).country == "IR"
    assert r.resolve("10.0.0.1", {"Other": "IR"}) is UNKNOWN


def test_subdivision_from_the_country_value_or_a_region_header() -> None:
    r = GeoResolver(policy())
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "UA-43"}) == Location("UA", "UA-43", "header")
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "UA", "CF-Region-Code": "14"}).subdivision == "UA-14"
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "UA", "X-Region-Code": "UA-09"}).subdivision == "UA-09"
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "UA", "X-Region-Code": "RU-09"}).subdivision is None
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "UA", "CF-Region-Code": "bad!", "X-Region-Code": "23"}
                     ).subdivision == "UA-23"
    custom = GeoResolver(compile_geo_policy(GeoSpec.model_validate({"trustedProxyCIDRs": TRUSTED}),
                                            region_headers=["X-Geo-Subdivision"]))
    assert custom.resolve("10.0.0.1", {"CF-IPCountry": "UA", "X-Geo-Subdivision": "40"}).subdivision == "UA-40"
    assert custom.resolve("10.0.0.1", {"CF-IPCountry": "UA", "CF-Region-Code": "40"}).subdivision is None


def test_peer_cache_stays_bounded() -> None:
    r = GeoResolver(policy())
    for i in range(5000):
        r.resolve(f"203.0.{i // 256}.{i % 256}", None)
    assert len(r._peers) <= 4096
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "IR"}).country == "IR"


# --- resolution from a MaxMind-format database ------------------------------------------------------


@pytest.fixture
def database(geoip_path: Path) -> GeoIPDatabase:
    db = open_geoip_database(str(geoip_path))
    assert db.database_type == "Test-City"
    return db


@pytest.mark.parametrize(("ip", "country", "subdivision"), [
    ("192.0.2.10", "US", "US-CA"),
    ("198.51.100.10", "IR", None),
    ("198.51.100.200", "KP", None),  # the more specific /25
    ("203.0.113.10", "UA", "UA-43"),
    ("203.0.113.70", "UA", "UA-46"),
    ("203.0.113.130", "UA", None),
    ("203.0.113.200", "CU", None),  # registered_country fallback
    ("2001:db8::5", "DE", "DE-BE"),
    ("2001:db8:1::5", "SY", None),
    ("2001:db8:2::5", "UA", "UA-09"),
    ("8.8.8.8", None, None),
    ("2001:db8:3::1", None, None),
])
def test_database_lookup(database: GeoIPDatabase, ip: str, country: str | None, subdivision: str | None) -> None:
    assert database.lookup(_ip(ip)) == (country, subdivision)


def test_database_resolves_untrusted_peers_by_their_own_address(database: GeoIPDatabase) -> None:
    r = GeoResolver(policy(), database)
    assert r.resolve("198.51.100.10", None) == Location("IR", None, "geoip")
    # a spoofed header and forwarded-for from an untrusted peer change nothing
    assert r.resolve("198.51.100.10", {"CF-IPCountry": "US", "X-Forwarded-For": "192.0.2.1"}).country == "IR"
    assert r.resolve("2001:db8:2::77", None) == Location("UA", "UA-09", "geoip")
    assert r.resolve("::ffff:203.0.113.10", None) == Location("UA", "UA-43", "geoip")
    assert r.resolve("8.8.8.8", None) is UNKNOWN


def test_database_uses_the_forwarded_client_behind_a_trusted_proxy(database: GeoIPDatabase) -> None:
    r = GeoResolver(policy(), database)
    assert r.resolve("10.0.0.1", {"X-Forwarded-For": "192.0.2.1, 203.0.113.10"}) == Location("UA", "UA-43", "geoip")
    assert r.resolve("10.0.0.1", {"X-Forwarded-For": "203.0.113.10, 10.4.4.4"}).subdivision == "UA-43"
    assert r.resolve("10.0.0.1", {"X-Forwarded-For": "198.51.100.10, junk"}) is UNKNOWN
    assert r.resolve("10.0.0.1", None) is UNKNOWN  # the proxy's own address is not in the database
    # a trusted header wins over the database; "XX" falls through to it
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "DE", "X-Forwarded-For": "198.51.100.10"}).source == "header"
    assert r.resolve("10.0.0.1", {"CF-IPCountry": "XX", "X-Forwarded-For": "198.51.100.10"}
                     ) == Location("IR", None, "geoip")


def test_decision_end_to_end_from_the_database(database: GeoIPDatabase) -> None:
    geo = policy()
    r = GeoResolver(geo, database)
    assert decide(geo, r.resolve("203.0.113.10", None), COMMERCIAL).region == "RU-occupied-UA"
    assert decide(geo, r.resolve("203.0.113.70", None), COMMERCIAL) is ALLOW
    assert decide(geo, r.resolve("203.0.113.130", None), COMMERCIAL) is ALLOW
    assert decide(geo, r.resolve("203.0.113.200", None), COMMERCIAL).region == "CU"
    assert decide(geo, r.resolve("8.8.8.8", None), COMMERCIAL) is BLOCK_UNKNOWN


def test_the_test_writer_follows_the_format(geoip_path: Path, tmp_path: Path) -> None:
    """Both readers of the maxminddb package (libmaxminddb through the C extension, and the pure
    Python decoder) read the databases the test writer builds, IPv6 and IPv4 trees alike."""
    import maxminddb

    from .builders import GEOIP_NETWORKS

    c_reader = maxminddb.open_database(str(geoip_path), maxminddb.MODE_MMAP_EXT)
    py_reader = maxminddb.open_database(str(geoip_path), maxminddb.MODE_FILE)
    assert type(c_reader).__module__ == "maxminddb.extension"
    for cidr, record in GEOIP_NETWORKS.items():
        net = ipaddress.ip_network(cidr)
        probe = net[1]
        if cidr == "198.51.100.0/24":
            probe = net[5]  # below the more specific /25
        assert c_reader.get(probe) == record, cidr
        assert py_reader.get(probe) == record, cidr
        assert c_reader.get_with_prefix_len(probe)[1] in (net.prefixlen, net.prefixlen + 1)
    meta = c_reader.metadata()
    assert (meta.ip_version, meta.record_size, meta.binary_format_major_version) == (6, 24, 2)
    v4 = write_mmdb(tmp_path / "v4.mmdb", {"198.51.100.0/24": city_record("IR")}, ip_version=4)
    db = open_geoip_database(str(v4))
    assert db.lookup(_ip("198.51.100.9")) == ("IR", None)
    assert db.lookup(_ip("2001:db8::1")) == (None, None)  # an IPv4-only database knows no IPv6 address
    assert db.lookup(_ip("192.0.2.1")) == (None, None)


def test_unusable_databases_are_refused_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mmdb"
    with pytest.raises(GeoIPDatabaseError, match="does not exist"):
        open_geoip_database(str(missing))
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(GeoIPDatabaseError, match=r"junk\.mmdb"):
        open_geoip_database(str(junk))


def test_a_closed_database_answers_unknown(tmp_path: Path) -> None:
    db = open_geoip_database(str(write_mmdb(tmp_path / "one.mmdb", {"198.51.100.0/24": city_record("IR")})))
    assert db.lookup(_ip("198.51.100.1")) == ("IR", None)
    db.close()
    assert db.lookup(_ip("198.51.100.1")) == (None, None)


@pytest.mark.parametrize(("record", "expected"), [
    ({"country": {"iso_code": "ir"}}, ("IR", None)),
    ({"country": {"iso_code": "UA"}, "subdivisions": [{"iso_code": "43"}, {"iso_code": "X"}]}, ("UA", "UA-43")),
    ({"registered_country": {"iso_code": "CU"}}, ("CU", None)),
    ({"country": {"iso_code": "UAX"}}, (None, None)),
    ({"country": "UA"}, (None, None)),
    ({"country": {"iso_code": "UA"}, "subdivisions": [{"iso_code": "4 3"}]}, ("UA", None)),
    ({"country": {"iso_code": "UA"}, "subdivisions": "43"}, ("UA", None)),
    (None, (None, None)),
    ([], (None, None)),
])
def test_record_location_is_tolerant(record: Any, expected: tuple[str | None, str | None]) -> None:
    assert record_location(record) == expected


# --- the 451 answer -------------------------------------------------------------------------------


def test_451_bodies() -> None:
    blocked = decide(policy(), Location("UA", "UA-43"), COMMERCIAL)
    body = geo_error_body(blocked, "openai")
    assert body["error"]["code"] == "unavailable_for_legal_reasons"
    assert body["error"]["type"] == "request_forbidden"
    assert body["error"]["param"] is None
    assert "RU-occupied-UA" in body["error"]["message"]
    anth = geo_error_body(blocked, "anthropic")
    assert anth == {"type": "error", "error": {"type": "permission_error", "message": body["error"]["message"]}}
    unknown = geo_error_body(BLOCK_UNKNOWN, "openai")["error"]["message"]
    assert "could not be determined" in unknown
    err = geo_error(blocked)
    assert err.status == 451
    assert err.code == "unavailable_for_legal_reasons"


def test_451_parses_in_the_sdks(
    openai_client: Callable[[Callable[[httpx2.Request], httpx2.Response]], openai.OpenAI],
    anthropic_client: Callable[[Callable[[httpx2.Request], httpx2.Response]], anthropic.Anthropic],
) -> None:
    blocked = decide(policy(), Location("IR"), COMMERCIAL)
    oai = openai_client(lambda req: json_response(451, geo_error_body(blocked, "openai")))
    with pytest.raises(openai.APIStatusError) as info:
        oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 451
    assert info.value.code == "unavailable_for_legal_reasons"
    assert info.value.type == "request_forbidden"
    ant = anthropic_client(lambda req: json_response(451, geo_error_body(blocked, "anthropic")))
    with pytest.raises(anthropic.APIStatusError) as ainfo:
        ant.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert ainfo.value.status_code == 451
    assert ainfo.value.body["error"]["type"] == "permission_error"
