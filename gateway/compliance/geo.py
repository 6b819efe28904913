"""Sanctioned regions: where a request comes from, and whether a channel may serve it.

Three steps, all pure except the optional database lookup:

1. :func:`compile_geo_policy` turns the instance's ``GeoSpec`` into a :class:`GeoPolicy` once per
   routing table (sets of blocked countries and subdivisions, parsed trusted-proxy networks,
   pre-built decisions), so the per-request work is a few dict and set lookups.
2. :class:`GeoResolver` finds the client's :class:`Location`: from the ingress's country headers
   when (and only when) the TCP peer is a trusted proxy, otherwise (or when the headers say
   nothing) from a MaxMind-format database on the client address; else the location is unknown.
3. :func:`decide` says whether one channel may serve that location: ``ALLOW`` or a blocking
   :class:`GeoDecision` (answered with HTTP 451, see :mod:`newapi_gateway.compliance.errors`).

``RU-occupied-UA`` is a region, not a country: it stands for the ISO 3166-2 subdivisions in
:data:`OCCUPIED_UA_SUBDIVISIONS`, a policy approximation at oblast granularity. A location known
only as ``UA`` (no subdivision) is not blocked. docs/compliance.md explains the rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from newapi_operator.api.v1alpha1 import GeoSpec

from .problems import ComplianceConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The ISO 3166-2 subdivisions that stand for the region ``RU-occupied-UA``.
OCCUPIED_UA_SUBDIVISIONS: Mapping[str, str] = {
    "UA-43": "Autonomous Republic of Crimea",
    "UA-40": "Sevastopol",
    "UA-14": "Donetsk Oblast",
    "UA-09": "Luhansk Oblast",
    "UA-23": "Zaporizhzhia Oblast",
}
#: Named regions accepted in ``sanctionedRegions.block`` besides country and subdivision codes.
NAMED_REGIONS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "RU-OCCUPIED-UA": ("RU-occupied-UA", tuple(OCCUPIED_UA_SUBDIVISIONS)),
}
#: Headers that may carry the client's first-level subdivision, read from trusted proxies only,
#: in this order: a full ISO 3166-2 code (``UA-43``) or the part after the dash (``43``, as
#: Cloudflare's ``cf-region-code`` sends it). ``GeoSpec`` has no field for them yet.
DEFAULT_REGION_HEADERS: tuple[str, ...] = ("CF-Region-Code", "X-Region-Code")
#: Country header values that mean "no country" (Cloudflare: XX unknown, T1 Tor; legacy GeoIP
#: pseudo-countries A1/A2/O1 and continent codes EU/AP).
NO_COUNTRY_VALUES = frozenset({"", "XX", "T1", "ZZ", "A1", "A2", "O1", "EU", "AP", "--"})

_COUNTRY_VALUE = re.compile(r"([A-Z]{2})(?:-([A-Z0-9]{1,3}))?")
_REGION_VALUE = re.compile(r"(?:([A-Z]{2})-)?([A-Z0-9]{1,3})")
_COUNTRY_CODE = re.compile(r"[A-Za-z]{2}")
_SUBDIVISION_CODE = re.compile(r"[A-Za-z]{2}-[A-Za-z0-9]{1,3}")
_PEER_CACHE_LIMIT = 4096

GeoSource = Literal["header", "geoip", "none"]


class GeoPolicyError(ComplianceConfigError):
    """The geo policy cannot be compiled. ``problems`` lists ``field: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems, "geo policy")


class HeaderGetter(Protocol):
    """Read access to request headers (``SafeHeaders``, aiohttp's ``CIMultiDictProxy``, a dict)."""

    def get(self, name: str, default: None = None, /) -> str | None: ...


class SupportsCommercial(Protocol):
    """A channel as far as geo blocking cares (``ChannelRoute`` and ``CompiledChannel`` qualify)."""

    @property
    def commercial(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Location:
    """Where a request comes from: ISO 3166-1 alpha-2 country and ISO 3166-2 subdivision, if known."""

    country: str | None
    subdivision: str | None = None
    source: GeoSource = "none"


UNKNOWN = Location(None, None, "none")


@dataclass(frozen=True, slots=True)
class GeoDecision:
    """The outcome for one channel. ``reason``: ``sanctioned_region`` or ``unknown_country``; ``region``
    is the block-list entry that matched (``IR``, ``RU-occupied-UA``, ``UA-65``)."""

    allowed: bool
    reason: str | None = None
    region: str | None = None

    @property
    def label(self) -> str:
        """Short form for logs and audit rows: ``allow``, ``block:IR``, ``block:unknown-country``."""
        if self.allowed:
            return "allow"
        return f"block:{self.region}" if self.region else "block:unknown-country"


ALLOW = GeoDecision(True)
BLOCK_UNKNOWN = GeoDecision(False, "unknown_country", None)


class TrustedProxies:
    """A set of networks answering ``address in proxies`` with one set lookup per distinct prefix length."""

    __slots__ = ("_v4", "_v6", "networks")

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self.networks = tuple(networks)
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for net in self.networks:
            table, bits = (v4, 32) if net.version == 4 else (v6, 128)
            table.setdefault(net.prefixlen, set()).add(int(net.network_address) >> (bits - net.prefixlen))
        self._v4 = tuple((32 - plen, frozenset(s)) for plen, s in sorted(v4.items()))
        self._v6 = tuple((128 - plen, frozenset(s)) for plen, s in sorted(v6.items()))

    def __contains__(self, address: IPAddress) -> bool:
        value = int(address)
        for shift, prefixes in self._v4 if address.version == 4 else self._v6:  # noqa: SIM110 (no genexpr: hot path)
            if value >> shift in prefixes:
                return True
        return False

    def __bool__(self) -> bool:
        return bool(self.networks)


@dataclass(frozen=True, slots=True, eq=False)
class GeoPolicy:
    """A ``GeoSpec`` compiled for the hot path (see :func:`compile_geo_policy`)."""

    country_blocks: Mapping[str, GeoDecision]
    subdivision_blocks: Mapping[str, GeoDecision]
    unknown_block: bool
    apply_to_in_cluster: bool
    country_headers: tuple[str, ...]
    region_headers: tuple[str, ...]
    trusted_proxies: TrustedProxies
    geoip_database: str | None
    #: the block list as configured, normalised (for docs, audit and the compliance check)
    blocked: tuple[str, ...] = field(default=())


def compile_geo_policy(spec: GeoSpec, region_headers: Iterable[str] = DEFAULT_REGION_HEADERS) -> GeoPolicy:
    """Compile ``spec``; raise :class:`GeoPolicyError` naming every unusable entry.

    ``sanctionedRegions.block`` entries may be ISO 3166-1 alpha-2 countries (``IR``), ISO 3166-2
    subdivisions (``UA-65``) or a named region (``RU-occupied-UA``); case does not matter.
    ``trustedProxyCIDRs`` entries are IPv4/IPv6 networks or single addresses (host bits are ignored).
    """
    problems: list[str] = []
    countries: dict[str, GeoDecision] = {}
    subdivisions: dict[str, GeoDecision] = {}
    blocked: list[str] = []
    for i, raw in enumerate(spec.sanctioned_regions.block):
        entry = raw.strip()
        named = NAMED_REGIONS.get(entry.upper())
        if named is not None:
            label, codes = named
            decision = GeoDecision(False, "sanctioned_region", label)
            for code in codes:
                subdivisions.setdefault(code, decision)
            blocked.append(label)
        elif _COUNTRY_CODE.fullmatch(entry):
            code = entry.upper()
            countries[code] = GeoDecision(False, "sanctioned_region", code)
            blocked.append(code)
        elif _SUBDIVISION_CODE.fullmatch(entry):
            code = entry.upper()
            subdivisions[code] = GeoDecision(False, "sanctioned_region", code)
            blocked.append(code)
        else:
            problems.append(
                f"geo.sanctionedRegions.block[{i}]: {raw!r} is not an ISO 3166-1 alpha-2 country (IR), an "
                f"ISO 3166-2 subdivision (UA-43) or a named region ({', '.join(v[0] for v in NAMED_REGIONS.values())})"
            )
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for i, cidr in enumerate(spec.trusted_proxy_cidrs):
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            problems.append(
                f"geo.trustedProxyCIDRs[{i}]: {cidr!r} is not an IPv4/IPv6 network; write e.g. 10.0.0.0/8 or fd00::/8"
            )
    headers = tuple(h.strip() for h in spec.country_headers if h.strip())
    if problems:
        raise GeoPolicyError(problems)
    return GeoPolicy(
        country_blocks=countries,
        subdivision_blocks=subdivisions,
        unknown_block=spec.unknown_country == "block",
        apply_to_in_cluster=spec.apply_to_in_cluster,
        country_headers=headers,
        region_headers=tuple(region_headers),
        trusted_proxies=TrustedProxies(networks),
        geoip_database=spec.geoip_database or None,
        blocked=tuple(blocked),
    )


def decide(policy: GeoPolicy, location: Location, channel: SupportsCommercial) -> GeoDecision:
    """Whether ``channel`` may serve a request from ``location`` (pure, a few hundred nanoseconds).

    * In-cluster (non-commercial) channels: always allowed unless ``applyToInCluster``; then
      sanctioned regions are blocked, but an unknown country is not.
    * Commercial channels (including BYOK): sanctioned countries and subdivisions are blocked; an
      unknown country is blocked when ``unknownCountry`` is ``block`` (the default).
    """
    commercial = channel.commercial
    if not commercial and not policy.apply_to_in_cluster:
        return ALLOW
    country = location.country
    if country is None:
        return BLOCK_UNKNOWN if commercial and policy.unknown_block else ALLOW
    blocked = policy.country_blocks.get(country)
    if blocked is not None:
        return blocked
    if location.subdivision is not None:
        blocked = policy.subdivision_blocks.get(location.subdivision)
        if blocked is not None:
            return blocked
    return ALLOW


# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


def parse_ip(text: str | None) -> IPAddress | None:
    """An address from a peer string or a forwarded-for entry (``ip``, ``ip:port``, ``[v6]:port``);
    IPv4-mapped IPv6 addresses become IPv4. None when unparsable."""
    if not text:
        return None
    text = text.strip()
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        if text.startswith("["):
            end = text.find("]")
            host = text[1:end] if end > 0 else ""
        elif text.count(":") == 1:
            host = text.split(":", 1)[0]
        else:
            return None
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return None
    if addr.version == 6:
        mapped = addr.ipv4_mapped
        if mapped is not None:
            return mapped
    return addr


def parse_country_value(value: str) -> tuple[str, str | None] | None:
    """``(country, subdivision)`` from a country header value: ``IR``, ``ua-43``; None for "no country"
    markers (``XX``, ``T1``, ...) and anything malformed."""
    v = value.strip().upper()
    if v in NO_COUNTRY_VALUES:
        return None
    m = _COUNTRY_VALUE.fullmatch(v)
    if m is None:
        return None
    country, sub = m.group(1), m.group(2)
    return country, f"{country}-{sub}" if sub else None


def parse_region_value(value: str, country: str) -> str | None:
    """The ISO 3166-2 subdivision from a region header value (``UA-43`` or ``43``) for ``country``;
    None when malformed or when its country prefix is a different country."""
    m = _REGION_VALUE.fullmatch(value.strip().upper())
    if m is None:
        return None
    prefix, code = m.group(1), m.group(2)
    if prefix is not None and prefix != country:
        return None
    return f"{country}-{code}"


def forwarded_client(peer: IPAddress, forwarded_for: str | None, trusted: TrustedProxies) -> IPAddress | None:
    """The client address behind a trusted proxy: walk ``X-Forwarded-For`` from the right, skipping
    trusted proxies; the first untrusted address is the client (entries further left were written
    by the client or by proxies we do not trust, and are ignored). Without the header the peer
    itself; when every entry is trusted, the leftmost; None when the entry that decides is malformed."""
    if not forwarded_for:
        return peer
    entries = forwarded_for.split(",")
    last: IPAddress | None = None
    for raw in reversed(entries):
        addr = parse_ip(raw)
        if addr is None:
            return None
        if addr not in trusted:
            return addr
        last = addr
    return last if last is not None else peer


class CountryLookup(Protocol):
    """A GeoIP database (:class:`newapi_gateway.compliance.geoip.GeoIPDatabase`)."""

    def lookup(self, ip: IPAddress) -> tuple[str | None, str | None]: ...


class GeoResolver:
    """Resolves the client's :class:`Location` under one :class:`GeoPolicy` (built per routing table).

    Order: (1) when the TCP peer is in ``trustedProxyCIDRs``, the first non-empty country header
    (plus a subdivision from the value or a region header); (2) the GeoIP database, if any, on the
    client address (the peer, or the ``X-Forwarded-For`` client when the peer is trusted);
    (3) unknown. Headers from untrusted peers are ignored entirely.
    """

    __slots__ = ("_peers", "database", "policy")

    def __init__(self, policy: GeoPolicy, database: CountryLookup | None = None) -> None:
        self.policy = policy
        self.database = database
        self._peers: dict[str, tuple[IPAddress | None, bool]] = {}

    def _peer(self, peer: str) -> tuple[IPAddress | None, bool]:
        hit = self._peers.get(peer)
        if hit is None:
            addr = parse_ip(peer)
            hit = (addr, addr is not None and addr in self.policy.trusted_proxies)
            if len(self._peers) >= _PEER_CACHE_LIMIT:
                self._peers.clear()
            self._peers[peer] = hit
        return hit

    def resolve(self, peer: str | None, headers: HeaderGetter | None) -> Location:
        """The location of a request whose TCP peer is ``peer`` (``request.remote``)."""
        addr, trusted = self._peer(peer) if peer else (None, False)
        policy = self.policy
        if trusted and headers is not None:
            for name in policy.country_headers:
                value = headers.get(name)
                if not value:
                    continue
                parsed = parse_country_value(value)
                if parsed is None:
                    continue
                country, subdivision = parsed
                if subdivision is None:
                    for region_header in policy.region_headers:
                        region = headers.get(region_header)
                        if region:
                            subdivision = parse_region_value(region, country)
                            if subdivision is not None:
                                break
                return Location(country, subdivision, "header")
        database = self.database
        if database is not None and addr is not None:
            client: IPAddress | None = addr
            if trusted:
                client = forwarded_client(addr, headers.get("X-Forwarded-For") if headers else None,
                                          policy.trusted_proxies)
            if client is not None:
                found, found_subdivision = database.lookup(client)
                if found is not None:
                    return Location(found, found_subdivision, "geoip")
        return UNKNOWN
