"""The MaxMind-format GeoIP database: the one piece of geo resolution that does I/O.

Any database in the MaxMind DB format with GeoIP2-style records works: GeoIP2/GeoLite2 City or
Country, DB-IP "lite" city/country, or one built in-house. A record gives

* ``country.iso_code`` (ISO 3166-1 alpha-2), falling back to ``registered_country.iso_code`` when a
  network has no location country (anonymous ranges, some satellite and anycast networks);
* ``subdivisions[0].iso_code``: the first-level subdivision *without* the country prefix (``43``
  for Crimea); Country-level databases have none, so subdivision-based blocks (``RU-occupied-UA``)
  need a City-level database or an ingress region header.

The reader is opened once per routing-table load (:func:`open_geoip_database`); a lookup is a few
microseconds with the C extension of ``maxminddb`` (pure Python is used when it is missing).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import maxminddb

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class GeoIPDatabaseError(ValueError):
    """The configured database cannot be used; the message names the path and what to do."""


class GeoIPDatabase:
    """An open MaxMind-format database: IP address -> (country, subdivision)."""

    __slots__ = ("_ipv4_only", "_reader", "database_type", "path")

    def __init__(self, reader: Any, path: str) -> None:
        self._reader = reader
        self.path = path
        meta = reader.metadata()
        self.database_type: str = str(meta.database_type)
        self._ipv4_only = int(meta.ip_version) == 4

    def lookup(self, ip: IPAddress) -> tuple[str | None, str | None]:
        """``(country, subdivision)`` of ``ip``: ISO 3166-1 alpha-2 and ISO 3166-2 (``UA-43``), or None."""
        if self._ipv4_only and ip.version == 6:
            return None, None
        try:
            record = self._reader.get(ip)
        except ValueError:  # closed reader or an address the tree cannot hold
            return None, None
        return record_location(record)

    def close(self) -> None:
        self._reader.close()

    def __repr__(self) -> str:
        return f"GeoIPDatabase({self.path!r}, {self.database_type!r})"


def _iso(value: Any) -> str | None:
    if isinstance(value, dict):
        code = value.get("iso_code")
        if isinstance(code, str) and len(code) == 2 and code.isalpha() and code.isascii():
            return code.upper()
    return None


def record_location(record: Any) -> tuple[str | None, str | None]:
    """Country and subdivision from one GeoIP2-style record (pure; tolerant of missing keys)."""
    if not isinstance(record, dict):
        return None, None
    country = _iso(record.get("country")) or _iso(record.get("registered_country"))
    if country is None:
        return None, None
    subdivision: str | None = None
    subs = record.get("subdivisions")
    if isinstance(subs, list) and subs and isinstance(subs[0], dict):
        code = subs[0].get("iso_code")
        if isinstance(code, str) and 1 <= len(code) <= 3 and code.isalnum() and code.isascii():
            subdivision = f"{country}-{code.upper()}"
    return country, subdivision


def open_geoip_database(path: str) -> GeoIPDatabase:
    """Open the database at ``path`` (memory-mapped); raise :class:`GeoIPDatabaseError` when unusable."""
    if not Path(path).is_file():
        raise GeoIPDatabaseError(
            f"geo.geoipDatabase: {path!r} does not exist or is not a file; mount the MaxMind-format "
            "database into the gateway pod at that path, or remove the field"
        )
    try:
        reader = maxminddb.open_database(path)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as err:
        raise GeoIPDatabaseError(
            f"geo.geoipDatabase: {path!r} is not a valid MaxMind DB file ({err}); "
            "use a GeoIP2/GeoLite2 City or Country database (.mmdb)"
        ) from None
    return GeoIPDatabase(reader, path)
