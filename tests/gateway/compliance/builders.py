"""Builders shared by the compliance tests: routing tables, snapshots, request contexts, and the
networks of the test GeoIP database."""

from __future__ import annotations

import json
from typing import Any

import httpx2
from multidict import CIMultiDict, CIMultiDictProxy

from newapi_gateway.hooks import RequestContext, SafeHeaders
from newapi_gateway.keys import KeyInfo
from newapi_gateway.routing_table import RoutingTable, parse_table
from newapi_gateway.snapshot import Snapshot, compile_snapshot

from .mmdb_writer import city_record

#: Networks of the test GeoIP database (documentation ranges: RFC 5737 / RFC 3849).
GEOIP_NETWORKS: dict[str, dict[str, Any]] = {
    "192.0.2.0/24": city_record("US", "CA"),
    "198.51.100.0/24": city_record("IR"),
    "198.51.100.128/25": city_record("KP"),  # more specific, overrides the /24
    "203.0.113.0/26": city_record("UA", "43"),  # Crimea
    "203.0.113.64/26": city_record("UA", "46"),  # Lviv
    "203.0.113.128/26": city_record("UA"),  # country only
    "203.0.113.192/26": city_record(None, registered="CU"),  # no location country
    "2001:db8::/48": city_record("DE", "BE"),
    "2001:db8:1::/48": city_record("SY"),
    "2001:db8:2::/48": city_record("UA", "09"),  # Luhansk
}


def channel(name: str, type: str = "vllm", models: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    """A channel document of the routing table, with a valid attestation for its type."""
    attestation = {
        "vllm": {"kind": "in-cluster", "owner": "ops"},
        "byok-passthrough": {"kind": "byok"},
    }.get(type, {"kind": "commercial-contract", "contractRef": "contract-7f3a"})
    doc: dict[str, Any] = {"name": name, "type": type, "models": models or [f"{name}-model"],
                           "attestation": attestation}
    if type in ("openai-compatible", "anthropic"):
        doc["credential"] = f"{name}-key"
        doc["endpoint"] = "https://api.anthropic.com" if type == "anthropic" else "https://api.openai.com/v1"
    elif type == "vllm":
        doc["endpoint"] = "http://vllm.vllm.svc:8000/v1"
    else:
        doc["allowedProviders"] = ["openai", "anthropic"]
    doc.update(kw)
    return doc


def make_table(channels: list[dict[str, Any]], policy: dict[str, Any] | None = None) -> RoutingTable:
    return parse_table({"schemaVersion": 1, "instance": "test", "channels": channels, "policy": policy or {}})


def make_snapshot(table: RoutingTable) -> Snapshot:
    creds = {ch.credential: f"sk-{ch.name}" for ch in table.channels if ch.credential}
    return compile_snapshot(table, creds)


def make_ctx(
    snapshot: Snapshot,
    body: dict[str, Any] | None = None,
    operation: str = "chat",
    peer: str | None = "127.0.0.1",
    headers: dict[str, str] | None = None,
    byok_provider: str | None = None,
) -> RequestContext:
    """A request context as the proxy builds it (hooks installed: peer and headers set)."""
    client_format = "anthropic" if operation == "messages" else "openai"
    raw = CIMultiDictProxy(CIMultiDict(headers or {}))
    return RequestContext(
        request_id="req_test", operation=operation, client_format=client_format,
        key=KeyInfo("key-1", "cust-1"), snapshot=snapshot, started=0.0, peer=peer,
        headers=SafeHeaders(raw), model="m", body=body or {}, byok_provider=byok_provider,
    )


def chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


def json_response(status: int, body: Any) -> httpx2.Response:
    return httpx2.Response(status, headers={"content-type": "application/json"}, content=json.dumps(body).encode())
