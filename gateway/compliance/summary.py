"""The compliance view of the routing table in force, for the admin API (pure).

``GET /api/v1/admin/compliance`` answers :func:`compliance_summary`: per channel its type,
attestation (kind, attested at render time, provider display name), whether it is commercial and
routable; the policy settings the controls depend on (sanctioned regions, where the country comes
from, AUP enforcement, audit, BYOK scope, disclosure); and the providers the disclosure page must
list. ``newapi compliance-check`` reads it to check attestation and the disclosure page without
cluster credentials. Nothing secret is in it: no credential, no account id, no contract reference
(the channel endpoints are shown: the admin API is for the operator's staff).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from newapi_operator.api.v1alpha1 import COMMERCIAL_CHANNEL_TYPES

from ..routing_table import ChannelRoute, RoutingTable
from .disclosure import provider_display_name, resold

#: The attestation kind each channel type must carry (as ``newapi_operator.api.compliance``).
ATTESTATION_FOR_TYPE = {
    "vllm": "in-cluster",
    "openai-compatible": "commercial-contract",
    "anthropic": "commercial-contract",
    "byok-passthrough": "byok",
}


def attestation_problem(channel: ChannelRoute) -> str | None:
    """Why a routed channel is not properly attested, or None."""
    att = channel.attestation
    want = ATTESTATION_FOR_TYPE[channel.type]
    if att.kind != want:
        return f"attestation kind {att.kind!r} does not fit a {channel.type} channel (needs {want!r})"
    if not att.attested:
        return "its Channel was not attested when the routing table was rendered (condition Attested is not True)"
    return None


def channel_summary(channel: ChannelRoute, unusable: Mapping[str, str]) -> dict[str, Any]:
    att = channel.attestation
    commercial = channel.type in COMMERCIAL_CHANNEL_TYPES
    return {
        "name": channel.name,
        "type": channel.type,
        "commercial": commercial,
        "models": list(channel.models),
        "endpoint": channel.endpoint,
        "routable": channel.name not in unusable,
        "unusableReason": unusable.get(channel.name),
        "attestation": {
            "kind": att.kind,
            "attested": att.attested,
            "provider": provider_display_name(channel) if commercial else None,
            "problem": attestation_problem(channel),
        },
        "disclosed": resold(channel),
        "allowedProviders": list(channel.allowed_providers),
    }


def compliance_summary(
    table: RoutingTable,
    unusable: Mapping[str, str],
    disclosure_status: int | None = None,
    geoip_database: str | None = None,
) -> dict[str, Any]:
    """The admin API's compliance document for ``table`` (see the module docstring); ``geoip_database``
    is the gateway's ``--geoip-db`` default, used when the table names no database."""
    policy = table.policy
    geo = policy.geo
    commercial = [ch for ch in table.channels if ch.type in COMMERCIAL_CHANNEL_TYPES]
    return {
        "object": "compliance_summary",
        "instance": table.instance,
        "routingTableVersion": table.version,
        "channels": [channel_summary(ch, unusable) for ch in table.channels],
        "commercialProviders": sorted({provider_display_name(ch) for ch in commercial}, key=str.casefold),
        "unattestedChannels": sorted(ch.name for ch in table.channels if attestation_problem(ch) is not None),
        "policy": {
            "geo": {
                "sanctionedRegions": list(geo.sanctioned_regions.block),
                "allowRelaxation": geo.sanctioned_regions.allow_relaxation,
                "countryHeaders": list(geo.country_headers),
                "trustedProxyCIDRs": list(geo.trusted_proxy_cidrs),
                "geoipDatabase": bool(geo.geoip_database or geoip_database),
                "unknownCountry": geo.unknown_country,
                "applyToInCluster": geo.apply_to_in_cluster,
            },
            "aup": {"enforcement": policy.aup.enforcement},
            "audit": {
                "enabled": policy.audit.enabled,
                "retentionDays": policy.audit.retention_days,
                "logPromptContent": policy.audit.log_prompt_content,
            },
            "byok": {"scope": policy.byok.scope},
            "reseller": {
                "disclosureRequired": policy.reseller.disclosure_required,
                "operatorName": policy.reseller.operator_name,
            },
        },
        "disclosure": {"path": "/legal/llm-providers", "status": disclosure_status},
    }
