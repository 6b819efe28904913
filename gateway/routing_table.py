"""The routing table: the gateway's whole view of channels and policy, as one JSON document.

The operator renders it from a ``NewAPIInstance`` and its bound ``Channel`` objects into the
ConfigMap ``<instance>-routes`` (key ``routes.json``); standalone, ``newapi gateway --routes FILE``
reads it from a file. docs/gateway.md is the reference for every field.

Upstream credentials are NOT in the table: a channel names a credential (``credential``), the
gateway looks it up in a separate mapping credential name -> key (the Secret
``<instance>-upstream`` or ``--upstream-credentials FILE``, see :mod:`newapi_gateway.credentials`).

Compactness: the table is written as compact JSON without default values
(:func:`dump_table`), so 2,000 channels fit a 1 MiB ConfigMap.

Versioning: ``schemaVersion`` is the document format (this module reads version 1);
``version`` is the content hash (:func:`content_version`), set by :func:`finalize` and checked on
load when present.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, model_validator

from newapi_operator.api.compliance import violations_from_validation_error
from newapi_operator.api.v1alpha1 import (
    COMMERCIAL_CHANNEL_TYPES,
    ApiModel,
    AuditSpec,
    AupProvider,
    AupSpec,
    ByokProvider,
    ByokSpec,
    GeoSpec,
    PricingSpec,
    ResellerSpec,
    TierSpec,
    TimeoutsSpec,
)

SCHEMA_VERSION = 1
#: Key of the table inside the ``<instance>-routes`` ConfigMap.
CONFIGMAP_KEY = "routes.json"
#: Key of the gzip-compressed table in the ConfigMap's ``binaryData`` (used when the plain JSON is too large).
CONFIGMAP_GZIP_KEY = CONFIGMAP_KEY + ".gz"
#: A ConfigMap holds at most 1 MiB.
CONFIGMAP_LIMIT_BYTES = 1024 * 1024

ChannelType = Literal["vllm", "openai-compatible", "anthropic", "byok-passthrough"]
WireFormat = Literal["openai", "anthropic"]

#: The wire format each channel type speaks upstream (byok-passthrough: per provider).
TYPE_FORMAT: dict[str, WireFormat] = {"vllm": "openai", "openai-compatible": "openai", "anthropic": "anthropic"}
#: The wire format of each BYOK provider (Google through its OpenAI-compatible endpoint).
PROVIDER_FORMAT: dict[str, WireFormat] = {"openai": "openai", "anthropic": "anthropic", "google": "openai"}
#: Public base URLs of the BYOK providers, used unless ``providerEndpoints`` overrides them.
DEFAULT_PROVIDER_ENDPOINTS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "google": "https://generativelanguage.googleapis.com/v1beta/openai",
}


class InvalidRoutingTable(ValueError):
    """The document is not a valid routing table. ``problems`` lists ``field: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid routing table: " + "; ".join(problems))


class AttestationSummary(ApiModel):
    """What the reseller disclosure page needs to know about a channel's attestation."""

    kind: Literal["in-cluster", "commercial-contract", "byok"] = Field(
        description="in-cluster, commercial-contract or byok (from the Channel's spec.attestation.kind)."
    )
    attested: bool = Field(default=True, description="The Channel's Attested condition when the table was rendered.")
    provider: str | None = Field(
        default=None, description="Display name of the upstream provider resold (e.g. Anthropic, OpenAI)."
    )
    owner: str | None = Field(default=None, description="Who runs the inference (in-cluster).")
    contract_ref: str | None = Field(default=None, description="Reference to the reseller terms (commercial).")


class ChannelRoute(ApiModel):
    """One upstream the gateway may route to (a bound, enabled Channel)."""

    name: str = Field(min_length=1, description="Channel name (unique in the table).")
    type: ChannelType = Field(description="vllm, openai-compatible, anthropic or byok-passthrough.")
    format: WireFormat | None = Field(
        default=None, description="Upstream wire format; derived from type when absent (byok: per provider)."
    )
    endpoint: str | None = Field(
        default=None, description="Upstream base URL, e.g. http://vllm:8000/v1 or https://api.anthropic.com."
    )
    credential: str | None = Field(
        default=None,
        description="Name of the credential in the upstream credentials (Secret <instance>-upstream); never the key.",
    )
    models: list[str] = Field(min_length=1, description="Client-facing model names this channel serves.")
    model_mapping: dict[str, str] = Field(default_factory=dict, description="Client model -> upstream model.")
    priority: int = Field(default=0, description="Higher priority groups are tried first.")
    weight: int = Field(default=1, ge=1, le=1000, description="Weight inside a priority group.")
    tiers: list[str] = Field(default_factory=list, description="Tiers this channel serves; empty = all.")
    pricing: PricingSpec = Field(default_factory=PricingSpec)
    timeouts: TimeoutsSpec = Field(default_factory=TimeoutsSpec)
    allowed_providers: list[ByokProvider] = Field(
        default_factory=list, description="byok-passthrough: providers a customer key may be used with."
    )
    provider_endpoints: dict[str, str] = Field(
        default_factory=dict, description="byok-passthrough: provider -> base URL override."
    )
    aup_provider: AupProvider | None = Field(default=None, description="AUP policy of this channel.")
    attestation: AttestationSummary

    @property
    def commercial(self) -> bool:
        """True when the upstream is a commercial provider (geo blocking and AUP apply)."""
        return self.type in COMMERCIAL_CHANNEL_TYPES or self.type == "byok-passthrough"

    def effective_format(self, provider: str | None = None) -> WireFormat:
        """The wire format spoken upstream (for byok-passthrough, that of ``provider``)."""
        if self.format is not None:
            return self.format
        if self.type == "byok-passthrough":
            return PROVIDER_FORMAT[provider or "openai"]
        return TYPE_FORMAT[self.type]

    def provider_endpoint(self, provider: str) -> str:
        """byok-passthrough: the base URL for ``provider``."""
        return self.provider_endpoints.get(provider) or DEFAULT_PROVIDER_ENDPOINTS[provider]


class BreakerSettings(ApiModel):
    """Per-channel circuit breaker."""

    failure_threshold: int = Field(
        default=5, ge=1, le=1000, description="Consecutive failures (connect, timeout, 5xx, 429) that open it."
    )
    cooldown_ms: int = Field(default=30000, ge=1, description="Time open before one half-open probe is let through.")


class GatewaySettings(ApiModel):
    """Data-plane limits that are not per channel."""

    max_request_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Largest request body accepted (larger: 413)."
    )
    max_attempts: int = Field(
        default=3, ge=1, le=20, description="Upstream attempts per request, the first included (failover budget)."
    )
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)


class Policy(ApiModel):
    """The instance's policy, from the NewAPIInstance spec."""

    tiers: dict[str, TierSpec] = Field(
        default_factory=dict, description="Customer tiers by name; empty = no tier restrictions."
    )
    geo: GeoSpec = Field(default_factory=GeoSpec)
    aup: AupSpec = Field(default_factory=AupSpec)
    audit: AuditSpec = Field(default_factory=AuditSpec)
    byok: ByokSpec = Field(default_factory=ByokSpec)
    reseller: ResellerSpec = Field(default_factory=ResellerSpec)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)


class RoutingTable(ApiModel):
    """The whole routing table (document format ``schemaVersion`` 1)."""

    schema_version: Literal[1] = Field(default=1, description="Document format version; this gateway reads 1.")
    version: str | None = Field(
        default=None, description="Content hash (sha256 of the canonical document without this field, 16 hex)."
    )
    instance: str = Field(min_length=1, description="NewAPIInstance name (or a free label standalone).")
    channels: list[ChannelRoute] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)

    @model_validator(mode="after")
    def _consistent(self) -> RoutingTable:
        problems = _check(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _check(table: RoutingTable) -> list[str]:
    """Rules that span fields; each message names the field and says what to do."""
    out: list[str] = []
    seen: set[str] = set()
    tiers = table.policy.tiers
    for i, ch in enumerate(table.channels):
        at = f"channels[{i}]"
        if ch.name in seen:
            out.append(f"{at}.name: duplicate channel name {ch.name!r}; channel names must be unique")
        seen.add(ch.name)
        if ch.type == "byok-passthrough":
            if not ch.allowed_providers:
                out.append(f"{at}.allowedProviders: a byok-passthrough channel needs at least one provider")
            if ch.credential:
                out.append(f"{at}.credential: a byok-passthrough channel never has an upstream credential")
            for prov, url in ch.provider_endpoints.items():
                if prov not in PROVIDER_FORMAT:
                    out.append(f"{at}.providerEndpoints.{prov}: unknown provider; use openai, anthropic or google")
                elif not _is_http_url(url):
                    out.append(f"{at}.providerEndpoints.{prov}: {url!r} is not an http(s) URL")
        else:
            if not ch.endpoint:
                out.append(f"{at}.endpoint: required for a {ch.type} channel (the upstream base URL)")
            elif not _is_http_url(ch.endpoint):
                out.append(f"{at}.endpoint: {ch.endpoint!r} is not an http(s) URL")
            if ch.type in COMMERCIAL_CHANNEL_TYPES and not ch.credential:
                out.append(f"{at}.credential: required for a {ch.type} channel (name of the upstream credential)")
        for model in ch.model_mapping:
            if model not in ch.models:
                out.append(f"{at}.modelMapping.{model}: maps a model the channel does not list in models")
        for tier in ch.tiers:
            if tier not in tiers:
                out.append(f"{at}.tiers: tier {tier!r} is not defined in policy.tiers")
    for tier_name, tier_spec in tiers.items():
        for ref in tier_spec.allowed_channels:
            if ref not in seen:
                out.append(f"policy.tiers.{tier_name}.allowedChannels: no channel named {ref!r} in the table")
    return out


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _content_doc(table: RoutingTable) -> dict[str, Any]:
    doc = table.model_dump(by_alias=True, exclude_defaults=True, exclude_none=True, mode="json")
    doc.pop("version", None)
    doc["schemaVersion"] = SCHEMA_VERSION
    return doc


def content_version(table: RoutingTable) -> str:
    """The content hash of ``table`` (ignores its ``version`` field): 16 hex digits of sha256."""
    return hashlib.sha256(_canonical(_content_doc(table))).hexdigest()[:16]


def finalize(table: RoutingTable) -> RoutingTable:
    """A copy of ``table`` with ``version`` set to its content hash."""
    return table.model_copy(update={"version": content_version(table)})


def dump_table(table: RoutingTable) -> bytes:
    """Compact JSON (no defaults, no whitespace), with ``version`` set: what goes into the ConfigMap."""
    doc = _content_doc(table)
    doc["version"] = content_version(table)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def parse_table(data: bytes | str | dict[str, Any]) -> RoutingTable:
    """Parse and validate a routing table document; raise :class:`InvalidRoutingTable` with every problem.

    A present ``version`` must equal the content hash (a mismatch means a hand edit or a
    truncated copy: remove the field or run ``finalize``).
    """
    if isinstance(data, dict):
        doc: Any = data
    else:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidRoutingTable([f"<document>: not valid JSON ({err})"]) from None
    if not isinstance(doc, dict):
        raise InvalidRoutingTable(["<document>: must be a JSON object"])
    schema = doc.get("schemaVersion", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise InvalidRoutingTable([
            f"schemaVersion: this gateway reads schema version {SCHEMA_VERSION}, the document has {schema!r}; "
            "upgrade the gateway or render the table for this version"
        ])
    try:
        table = RoutingTable.model_validate(doc)
    except ValidationError as err:
        problems: list[str] = []
        for v in violations_from_validation_error(err):
            if v.field == "<root>":
                problems.extend(v.message.split("; "))  # the cross-field rules of _check
            else:
                problems.append(str(v))
        raise InvalidRoutingTable(problems) from None
    want = content_version(table)
    if table.version is None:
        return table.model_copy(update={"version": want})
    if table.version != want:
        raise InvalidRoutingTable([
            f"version: {table.version!r} does not match the content hash {want!r}; the document was edited "
            "or truncated after rendering (remove the field to have it computed)"
        ])
    return table


def configmap_table(data: Mapping[str, str] | None, binary_data: Mapping[str, str] | None) -> str | None:
    """The table document held by a ``<instance>-routes`` ConfigMap, in either encoding; None if absent.

    Small tables are plain JSON under ``data["routes.json"]``; tables too large for that (thousands of
    channels) are gzip-compressed under ``binaryData["routes.json.gz"]`` (base64 on the wire). A
    corrupt compressed entry raises :class:`InvalidRoutingTable`.
    """
    if data and CONFIGMAP_KEY in data:
        return data[CONFIGMAP_KEY]
    if binary_data and CONFIGMAP_GZIP_KEY in binary_data:
        try:
            return gzip.decompress(base64.b64decode(binary_data[CONFIGMAP_GZIP_KEY])).decode()
        except (binascii.Error, OSError, EOFError, UnicodeDecodeError) as err:
            problem = f"binaryData.{CONFIGMAP_GZIP_KEY}: not base64 gzip of UTF-8 JSON ({err})"
            raise InvalidRoutingTable([problem]) from err
    return None
