"""The routing table and upstream credentials of an instance, from its spec and bound channels (pure).

The table is the gateway's document (:mod:`newapi_gateway.routing_table`), stored compact in the
ConfigMap ``<instance>-routes`` under ``routes.json``. Credentials are not in it: each channel
with a ``secretRef`` names a credential equal to **its own channel name**, and the Secret
``<instance>-upstream`` holds that name -> the key copied from the channel's Secret.

Size: the compact JSON goes under ``data["routes.json"]`` while it is at most
:data:`PLAIN_LIMIT` bytes (readable with kubectl). A larger table (2,000 channels with several
models, mappings and per-model prices each reach ~1.4 MB) is stored gzip-compressed under
``binaryData["routes.json.gz"]`` instead (the same document, typically 10x smaller; the gzip
header carries no timestamp, so the bytes are stable). Exactly one of the two keys exists.
:func:`read_configmap_table` is the reader's side.

Tiers: ``policy.tiers`` is the instance's ``spec.tiers`` with each ``allowedChannels`` list
reduced to bound channels. A tier whose ``allowedChannels`` named channels but none of them is
bound is left out of the table (fail closed: an empty list would mean "every channel"), and
the instance reports it; channels restricted to such tiers only are excluded.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydantic import ValidationError

from newapi_gateway.routing_table import (
    CONFIGMAP_GZIP_KEY,
    CONFIGMAP_KEY,
    CONFIGMAP_LIMIT_BYTES,
    AttestationSummary,
    ChannelRoute,
    Policy,
    RoutingTable,
    configmap_table,
    dump_table,
    finalize,
)
from newapi_operator.api.compliance import violations_from_validation_error
from newapi_operator.api.v1alpha1 import ChannelSpec, NewAPIInstanceSpec, TierSpec

from .binding import Binding, BoundChannel, Excluded

#: Largest ``routes.json`` kept as plain text; larger tables are stored gzip-compressed.
PLAIN_LIMIT = 1_000_000
#: ``binaryData`` key of the gzip-compressed table.
GZIP_KEY = CONFIGMAP_GZIP_KEY

#: Display names of well-known upstream hosts (reseller disclosure).
KNOWN_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("openai.com", "OpenAI"),
    ("anthropic.com", "Anthropic"),
    ("googleapis.com", "Google"),
    ("mistral.ai", "Mistral AI"),
    ("cohere.ai", "Cohere"),
    ("cohere.com", "Cohere"),
    ("deepseek.com", "DeepSeek"),
    ("groq.com", "Groq"),
    ("together.xyz", "Together AI"),
    ("openrouter.ai", "OpenRouter"),
    ("azure.com", "Microsoft Azure"),
    ("amazonaws.com", "Amazon Web Services"),
)


def provider_name(spec: ChannelSpec) -> str | None:
    """The upstream provider to disclose for a commercial channel (None for in-cluster and BYOK)."""
    if spec.type not in ("openai-compatible", "anthropic") or not spec.endpoint:
        return None
    host = (urlsplit(spec.endpoint).hostname or "").lower()
    for suffix, name in KNOWN_PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return name
    return "Anthropic" if spec.type == "anthropic" and not host else (host or None)


def credential_name(channel_name: str) -> str:
    """The credential (key of ``<instance>-upstream``) of a channel: the channel's name."""
    return channel_name


def channel_route(name: str, spec: ChannelSpec, tiers: Sequence[str] | None = None) -> ChannelRoute:
    """The routing-table entry of a bound channel."""
    att = spec.attestation
    return ChannelRoute(
        name=name,
        type=spec.type,
        endpoint=spec.endpoint if spec.type != "byok-passthrough" else None,
        credential=credential_name(name) if spec.secret_ref is not None and spec.type != "byok-passthrough" else None,
        models=list(spec.models),
        model_mapping=dict(spec.model_mapping),
        priority=spec.priority,
        weight=spec.weight,
        tiers=list(spec.tiers if tiers is None else tiers),
        pricing=spec.pricing,
        timeouts=spec.timeouts,
        allowed_providers=list(spec.allowed_providers),
        provider_endpoints=dict(spec.provider_endpoints),
        aup_provider=spec.aup_provider,
        attestation=AttestationSummary(
            kind=att.kind,
            attested=True,
            provider=provider_name(spec),
            owner=att.owner,
            contract_ref=att.contract_ref,
        ),
    )


def _policy(spec: NewAPIInstanceSpec, tiers: dict[str, TierSpec]) -> Policy:
    return Policy(tiers=tiers, geo=spec.geo, aup=spec.aup, audit=spec.audit, byok=spec.byok, reseller=spec.reseller)


def route_problems(instance_name: str, instance: NewAPIInstanceSpec, name: str, spec: ChannelSpec) -> list[str]:
    """Why a channel would not make a valid routing-table entry (empty = it does)."""
    tiers = {t: s.model_copy(update={"allowed_channels": []}) for t, s in instance.tiers.items()}
    try:
        RoutingTable(instance=instance_name, channels=[channel_route(name, spec)], policy=_policy(instance, tiers))
    except ValidationError as err:
        out: list[str] = []
        for v in violations_from_validation_error(err):
            messages = v.message.split("; ") if v.field == "<root>" else [str(v)]
            out.extend(m.replace("channels[0].", "spec.").replace("channels.0.", "spec.") for m in messages)
        return out
    return []


@dataclass
class RenderedRoutes:
    """The finalized table, its compact JSON and what rendering had to leave out."""

    table: RoutingTable
    document: str
    dropped_tiers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        assert self.table.version is not None
        return self.table.version

    @property
    def size(self) -> int:
        """Bytes of the compact JSON document."""
        return len(self.document.encode())

    def configmap_content(self) -> tuple[dict[str, str], dict[str, str]]:
        """``(data, binaryData)`` of the ConfigMap: plain JSON, or gzip (base64 on the wire) when large."""
        raw = self.document.encode()
        if len(raw) <= PLAIN_LIMIT:
            return {CONFIGMAP_KEY: self.document}, {}
        return {}, {GZIP_KEY: base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode()}

    @property
    def stored_size(self) -> int:
        """Bytes the ConfigMap's content takes on the server (binaryData counts decoded)."""
        data, binary = self.configmap_content()
        return sum(len(v.encode()) for v in data.values()) + sum(len(base64.b64decode(v)) for v in binary.values())


read_configmap_table = configmap_table  # the gateway owns the format; one reader for both sides


def _tiers(instance: NewAPIInstanceSpec, bound: set[str]) -> tuple[dict[str, TierSpec], list[str], list[str]]:
    """The table's tiers for a set of bound channels, the tiers left out, and notes saying why."""
    tiers: dict[str, TierSpec] = {}
    dropped: list[str] = []
    notes: list[str] = []
    for tier_name, tier in sorted(instance.tiers.items()):
        if tier.allowed_channels:
            kept = [c for c in tier.allowed_channels if c in bound]
            if not kept:
                dropped.append(tier_name)
                notes.append(
                    f"spec.tiers.{tier_name}: none of its allowedChannels ({', '.join(tier.allowed_channels)}) is "
                    f"bound, so the tier is left out of the routing table and its keys are refused; bind one of them")
                continue
            tier = tier.model_copy(update={"allowed_channels": kept})
        tiers[tier_name] = tier
    return tiers, dropped, notes


class RoutingTableTooLarge(ValueError):
    """The compact table does not fit a ConfigMap."""


def render_routes(instance_name: str, instance: NewAPIInstanceSpec, binding: Binding) -> RenderedRoutes:
    """Render the table for the bound channels; may move channels from bound to excluded (tiers).

    Raises :class:`RoutingTableTooLarge` when the compact document exceeds 1 MiB.
    """
    tiers, dropped, notes = _tiers(instance, {b.name for b in binding.bound})
    while True:  # excluding a channel can empty another tier's allowedChannels: repeat until stable
        still_bound: list[BoundChannel] = []
        for b in binding.bound:
            if b.spec.tiers and all(t in dropped for t in b.spec.tiers):
                binding.excluded.append(Excluded(
                    b.name, "UnknownTier",
                    f"spec.tiers: serves only tier(s) left out of the routing table ({', '.join(b.spec.tiers)})"))
            else:
                still_bound.append(b)
        if len(still_bound) == len(binding.bound):
            break
        binding.bound = still_bound
        binding.excluded.sort(key=lambda e: e.name)
        tiers, dropped, notes = _tiers(instance, {b.name for b in still_bound})
    routes = [channel_route(b.name, b.spec, [t for t in b.spec.tiers if t not in dropped]) for b in binding.bound]
    table = finalize(RoutingTable(instance=instance_name, channels=routes, policy=_policy(instance, tiers)))
    rendered = RenderedRoutes(table, dump_table(table).decode(), dropped, notes)
    if rendered.stored_size > CONFIGMAP_LIMIT_BYTES - 16 * 1024:  # room for the ConfigMap's metadata
        raise RoutingTableTooLarge(
            f"the routing table of {len(routes)} channels takes {rendered.stored_size} bytes even compressed, over "
            f"the ConfigMap limit of {CONFIGMAP_LIMIT_BYTES} bytes; split the channels across instances "
            "(channelSelector)")
    return rendered


def upstream_credentials(bound: Sequence[BoundChannel]) -> dict[str, str]:
    """``<instance>-upstream`` data: credential name -> base64 key (copied as stored in the source Secret)."""
    return {credential_name(b.name): b.credential for b in bound if b.credential is not None}
