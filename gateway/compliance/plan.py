"""Everything the compliance checks need from one routing table, compiled once.

:func:`compile_plan` is called when a table is loaded (and lazily, once, for a table the checks
have not seen); the request path then only reads the :class:`CompliancePlan`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..routing_table import RoutingTable
from .aup import AupPlan, compile_aup_plan
from .aup_policy import PolicyLibrary
from .disclosure import Disclosure, compile_disclosure
from .geo import DEFAULT_REGION_HEADERS, CountryLookup, GeoPolicy, GeoResolver, compile_geo_policy
from .geoip import GeoIPDatabaseError, open_geoip_database
from .problems import ComplianceConfigError

DatabaseOpener = Callable[[str], CountryLookup]


@dataclass(frozen=True, slots=True, eq=False)
class CompliancePlan:
    """The compiled compliance view of one routing table."""

    table: RoutingTable
    geo: GeoPolicy
    resolver: GeoResolver
    aup: AupPlan
    disclosure: Disclosure


def compile_plan(
    table: RoutingTable,
    library: PolicyLibrary,
    open_database: DatabaseOpener = open_geoip_database,
    region_headers: Iterable[str] = DEFAULT_REGION_HEADERS,
    default_geoip_database: str | None = None,
) -> CompliancePlan:
    """Compile ``table``; raise :class:`ComplianceConfigError` listing every problem (geo entries, a
    missing policy file, ``aup: off`` with commercial channels, an unusable GeoIP database).
    ``default_geoip_database`` (``newapi gateway --geoip-db``) is used when the table names none."""
    problems: list[str] = []
    geo: GeoPolicy | None = None
    aup: AupPlan | None = None
    database: CountryLookup | None = None
    try:
        geo = compile_geo_policy(table.policy.geo, region_headers)
    except ComplianceConfigError as err:
        problems.extend(err.problems)
    try:
        aup = compile_aup_plan(table, library)
    except ComplianceConfigError as err:
        problems.extend(err.problems)
    path = table.policy.geo.geoip_database or default_geoip_database
    if path:
        try:
            database = open_database(path)
        except GeoIPDatabaseError as err:
            problems.append(str(err))
    if problems or geo is None or aup is None:
        raise ComplianceConfigError(problems, "compliance settings of the routing table")
    return CompliancePlan(table, geo, GeoResolver(geo, database), aup, compile_disclosure(table))
