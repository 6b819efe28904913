"""A minimal MaxMind DB (format 2.0) writer, for tests: small databases built on the fly.

Written from the public "MaxMind DB File Format Specification" (v2.0): a binary search tree over
the 128 bits of an IPv6 address (IPv4 networks live at ``::/96``, where readers look for them),
16 zero bytes, the data section, then ``\\xab\\xcd\\xefMaxMind.com`` and the metadata map.

Supports what GeoIP2-style records need: maps, arrays, UTF-8 strings, booleans, doubles and
unsigned integers. Records are 24 bits, so the tree plus data must stay under 16 MiB (ample for
tests). Later, more specific networks override earlier, broader ones.

    write_mmdb(path, {"203.0.113.0/24": {"country": {"iso_code": "IR"}}})
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
RECORD_BITS = 24

# data types (spec: "Output Data Section")
_POINTER, _STRING, _DOUBLE, _BYTES, _UINT16, _UINT32, _MAP = 1, 2, 3, 4, 5, 6, 7
_INT32, _UINT64, _UINT128, _ARRAY, _BOOLEAN = 8, 9, 10, 11, 14


def _control(type_: int, size: int) -> bytes:
    """Control byte(s): type in the top three bits (0 = extended, next byte is type - 7), then size."""
    if size < 29:
        size_bits, extra = size, b""
    elif size < 29 + 256:
        size_bits, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        size_bits, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        size_bits, extra = 31, (size - 65821).to_bytes(3, "big")
    if type_ <= 7:
        return bytes([(type_ << 5) | size_bits]) + extra
    return bytes([size_bits, type_ - 7]) + extra


def _uint(type_: int, value: int) -> bytes:
    payload = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(type_, len(payload)) + payload


class Typed:
    """An unsigned integer with an explicit type (the metadata keys need exact types: libmaxminddb checks)."""

    __slots__ = ("type", "value")

    def __init__(self, type_: int, value: int) -> None:
        self.type, self.value = type_, value


def uint16(value: int) -> Typed:
    return Typed(_UINT16, value)


def uint32(value: int) -> Typed:
    return Typed(_UINT32, value)


def uint64(value: int) -> Typed:
    return Typed(_UINT64, value)


def encode(value: Any) -> bytes:
    """One value in the data-section encoding (plain ints get the smallest unsigned type that fits)."""
    if isinstance(value, Typed):
        return _uint(value.type, value.value)
    if isinstance(value, bool):
        return _control(_BOOLEAN, int(value))
    if isinstance(value, str):
        raw = value.encode()
        return _control(_STRING, len(raw)) + raw
    if isinstance(value, bytes):
        return _control(_BYTES, len(value)) + value
    if isinstance(value, float):
        return _control(_DOUBLE, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative integers are not supported by this writer")
        if value < 1 << 16:
            return _uint(_UINT16, value)
        if value < 1 << 32:
            return _uint(_UINT32, value)
        if value < 1 << 64:
            return _uint(_UINT64, value)
        return _uint(_UINT128, value)
    if isinstance(value, Mapping):
        out = bytearray(_control(_MAP, len(value)))
        for k, v in value.items():
            out += encode(str(k)) + encode(v)
        return bytes(out)
    if isinstance(value, list | tuple):
        out = bytearray(_control(_ARRAY, len(value)))
        for v in value:
            out += encode(v)
        return bytes(out)
    raise TypeError(f"cannot encode {type(value).__name__}")


class _Node:
    __slots__ = ("children",)

    def __init__(self) -> None:
        # each child: _Node, an int (index of a data value) or None (no data)
        self.children: list[_Node | int | None] = [None, None]


def _bits(network: ipaddress.IPv4Network | ipaddress.IPv6Network, ip_version: int) -> tuple[int, int]:
    """(address, prefix length) of a network in the tree: 128 bits in an IPv6 tree (IPv4 at ::/96),
    32 bits in an IPv4 tree."""
    if ip_version == 4:
        if network.version != 4:
            raise ValueError(f"{network} cannot be stored in an IPv4 database")
        return int(network.network_address), network.prefixlen
    if network.version == 4:
        return int(network.network_address), network.prefixlen + 96
    return int(network.network_address), network.prefixlen


def _insert(root: _Node, address: int, prefixlen: int, data: int, width: int) -> None:
    if prefixlen == 0:
        raise ValueError("a /0 network cannot be stored (the root must stay a node)")
    node = root
    for depth in range(prefixlen):
        bit = (address >> (width - 1 - depth)) & 1
        if depth == prefixlen - 1:
            node.children[bit] = data  # replaces whatever was below (more specific wins when inserted later)
            return
        child = node.children[bit]
        if not isinstance(child, _Node):
            split = _Node()
            split.children = [child, child]  # keep the broader network's data on both halves
            node.children[bit] = split
            child = split
        node = child


def build_mmdb(
    networks: Mapping[str, Any],
    database_type: str = "Test-City",
    languages: tuple[str, ...] = ("en",),
    build_epoch: int = 1_700_000_000,
    ip_version: int = 6,
) -> bytes:
    """The bytes of a database mapping each network (CIDR string) to its record."""
    width = 128 if ip_version == 6 else 32
    root = _Node()
    values: list[bytes] = []
    index: dict[str, int] = {}
    for cidr, record in networks.items():
        key = json.dumps(record, sort_keys=True)
        if key not in index:
            index[key] = len(values)
            values.append(encode(record))
        address, prefixlen = _bits(ipaddress.ip_network(cidr, strict=True), ip_version)
        _insert(root, address, prefixlen, index[key], width)

    nodes: list[_Node] = []
    ids: dict[int, int] = {}
    queue = [root]
    while queue:  # breadth-first numbering: the root is node 0
        node = queue.pop(0)
        ids[id(node)] = len(nodes)
        nodes.append(node)
        queue.extend(c for c in node.children if isinstance(c, _Node))
    node_count = len(nodes)

    offsets: list[int] = []
    data = bytearray()
    for raw in values:
        offsets.append(len(data))
        data += raw

    def record(child: _Node | int | None) -> int:
        if child is None:
            return node_count
        if isinstance(child, _Node):
            return ids[id(child)]
        return node_count + 16 + offsets[child]

    tree = bytearray()
    for node in nodes:
        for child in node.children:
            value = record(child)
            if value >= 1 << RECORD_BITS:
                raise ValueError("database too large for 24-bit records")
            tree += value.to_bytes(3, "big")

    metadata = {
        "binary_format_major_version": uint16(2),
        "binary_format_minor_version": uint16(0),
        "build_epoch": uint64(build_epoch),
        "database_type": database_type,
        "description": {"en": "test database built by tests/gateway/compliance/mmdb_writer.py"},
        "ip_version": uint16(ip_version),
        "languages": list(languages),
        "node_count": uint32(node_count),
        "record_size": uint16(RECORD_BITS),
    }
    return bytes(tree) + b"\x00" * 16 + bytes(data) + METADATA_MARKER + encode(metadata)


def write_mmdb(path: str | Path, networks: Mapping[str, Any], **kwargs: Any) -> Path:
    """Write :func:`build_mmdb` to ``path`` and return it."""
    target = Path(path)
    target.write_bytes(build_mmdb(networks, **kwargs))
    return target


def city_record(country: str | None, *subdivisions: str, registered: str | None = None) -> dict[str, Any]:
    """A GeoIP2-City-shaped record: ``country.iso_code`` and ``subdivisions[].iso_code`` (no country prefix)."""
    rec: dict[str, Any] = {}
    if country is not None:
        rec["country"] = {"iso_code": country, "names": {"en": f"Country {country}"}, "geoname_id": 1000}
    if registered is not None:
        rec["registered_country"] = {"iso_code": registered}
    if subdivisions:
        rec["subdivisions"] = [{"iso_code": s, "names": {"en": f"Region {s}"}} for s in subdivisions]
    return rec
