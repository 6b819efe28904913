"""The ``newapi.openova.io/v1alpha1`` API: the one source of truth for the three kinds.

Everything else is derived from these models: the CRDs in ``crds/`` (``newapi crds``), the
compliance rules (``newapi_operator.api.compliance``), the operator's rendering and the gateway's
routing table. Field names are camelCase on the wire (aliases) and snake_case in Python.

Money is always an integer number of **micro-credits** (1 credit = 1,000,000 micro-credits);
no field that holds money is a float.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

GROUP = "newapi.openova.io"
VERSION = "v1alpha1"
API_VERSION: Final = "newapi.openova.io/v1alpha1"
assert f"{GROUP}/{VERSION}" == API_VERSION

#: Regions blocked on commercial-provider channels unless relaxed with a justification.
DEFAULT_SANCTIONED_REGIONS: tuple[str, ...] = ("IR", "KP", "SY", "CU", "RU-occupied-UA")

#: Channel types the product supports.
CHANNEL_TYPES: tuple[str, ...] = ("vllm", "openai-compatible", "anthropic", "byok-passthrough")

#: Channel types whose upstream is a commercial provider reached under the operator's contract.
COMMERCIAL_CHANNEL_TYPES: frozenset[str] = frozenset({"openai-compatible", "anthropic"})

#: Types that resell subscription-tier capacity (or look like it); never accepted.
SUBSCRIPTION_LOOKALIKE = re.compile(r"subscription|oauth|max[-_ ]?plan|pass[-_ ]?through-to|bypass", re.I)

SUBSCRIPTION_EXCLUDED_MESSAGE = (
    "reselling subscription-tier capacity (Max plans, ChatGPT Plus/Pro, OAuth pass-through to a "
    "developer product) is excluded by the compliance posture; build premium channels only on "
    "commercial API contracts (type openai-compatible or anthropic with a commercial-contract "
    "attestation)"
)

MicroCredits = Annotated[int, Field(ge=0, json_schema_extra={"format": "int64"})]


class ApiModel(BaseModel):
    """Base for every API struct: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=False,
    )

    def wire(self) -> dict[str, Any]:
        """The object as it is written to the Kubernetes API (camelCase, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --------------------------------------------------------------------------------------------
# Shared structs
# --------------------------------------------------------------------------------------------


class Condition(ApiModel):
    """A status condition, as in ``metav1.Condition``."""

    type: str = Field(description="Condition type, e.g. Ready, Valid, Attested, Degraded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word saying why.")
    message: str = Field(default="", description="What happened and what to do, for people.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was computed from."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When status last changed."
    )


class LabelSelectorRequirement(ApiModel):
    """One set-based selector requirement, as in ``metav1.LabelSelectorRequirement``."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(ApiModel):
    """A label selector, as in ``metav1.LabelSelector``. Empty selects everything."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class LocalObjectReference(ApiModel):
    """A reference to an object of a known kind in the same namespace."""

    name: str = Field(min_length=1, description="Name of the object in the same namespace.")


class SecretKeyRef(ApiModel):
    """A key in a Secret of the same namespace."""

    name: str = Field(min_length=1, description="Secret name in the Channel's namespace.")
    key: str = Field(default="api-key", min_length=1, description="Key inside the Secret.")


# --------------------------------------------------------------------------------------------
# NewAPIInstance
# --------------------------------------------------------------------------------------------


class IngressSpec(ApiModel):
    """Ingress hosts: customers reach ``host``; ops staff reach ``adminHost`` (admin paths only)."""

    host: str = Field(min_length=1, description="Customer-facing API host, e.g. api.<sovereign-fqdn>.")
    admin_host: str = Field(
        min_length=1, description="Ops-staff admin host, e.g. admin.<sovereign-fqdn>; IdP-gated."
    )
    tls_issuer: str = Field(default="letsencrypt-prod", description="cert-manager ClusterIssuer name.")
    class_name: str | None = Field(default=None, description="IngressClass name; cluster default if unset.")


class DatabaseSpec(ApiModel):
    """Durable state. Without ``existingSecret`` the gateway uses embedded SQLite (one replica only)."""

    existing_secret: str | None = Field(
        default=None,
        description="Secret holding the PostgreSQL DSN under key SQL_DSN. Absent = embedded SQLite.",
    )


class ValkeySpec(ApiModel):
    """Shared rate-limit and hot-counter store. Without ``url`` limits are in-process (one replica)."""

    url: str | None = Field(default=None, description="redis:// or rediss:// URL of Valkey/Redis.")


class KeycloakSpec(ApiModel):
    """OIDC settings of the admin UI when ``mode`` is keycloak."""

    issuer: str | None = Field(default=None, description="OIDC issuer URL of the ops realm.")
    client_id: str = Field(default="newapi-admin", description="OIDC client id of the admin UI.")


class AdminUISpec(ApiModel):
    """How ops staff sign in to the admin UI on ``ingress.adminHost``."""

    mode: Literal["keycloak", "masterKey"] = Field(
        default="keycloak",
        description="keycloak = OIDC via the ops realm; masterKey = static token (dev/bootstrap only).",
    )
    keycloak: KeycloakSpec = Field(default_factory=KeycloakSpec)


class CustomerAPISpec(ApiModel):
    """How customer API keys are issued."""

    key_issuer: Literal["catalyst", "self-serve"] = Field(
        default="catalyst",
        description="catalyst = keys are issued by the portal through the admin API (CustomerKey CRs).",
    )


class AuthSpec(ApiModel):
    """Authentication of ops staff (admin UI) and of customers (API keys)."""

    admin_ui: AdminUISpec = Field(default_factory=AdminUISpec, alias="adminUI")
    customer_api: CustomerAPISpec = Field(default_factory=CustomerAPISpec, alias="customerAPI")


class TierSpec(ApiModel):
    """A customer tier: quota, what it may use, how models are downgraded, how it is billed."""

    daily_request_quota: int | None = Field(
        default=None, ge=0, description="Requests per key per UTC day; absent = unlimited."
    )
    allowed_models: list[str] = Field(
        default_factory=list, description="Client model names this tier may request; empty = all."
    )
    allowed_channels: list[str] = Field(
        default_factory=list, description="Channel names this tier may be routed to; empty = all."
    )
    model_downgrades: dict[str, str] = Field(
        default_factory=dict,
        description="Requested model -> model actually served for this tier (the routing table).",
    )
    free: bool = Field(
        default=False,
        description="Free/promotional tier: may only be served by in-cluster (vllm) channels.",
    )
    unlimited_credit: bool = Field(
        default=False,
        description="Keys of this tier may omit creditGrant and spendingCap (open budget).",
    )
    price_multiplier_percent: int = Field(
        default=100, ge=0, le=10000, description="Price multiplier in percent applied to channel prices."
    )


class SanctionedRegionsSpec(ApiModel):
    """Regions whose requests are refused; the defaults are a compliance baseline."""

    block: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SANCTIONED_REGIONS),
        description=(
            "ISO-3166-1 alpha-2 codes (and the region RU-occupied-UA) blocked on commercial "
            "channels. Removing a default needs allowRelaxation and a justification."
        ),
    )
    allow_relaxation: bool = Field(
        default=False, description="Set true ONLY with a recorded justification reviewed by counsel."
    )
    justification: str = Field(default="", description="Why a default region is not blocked.")


class GeoSpec(ApiModel):
    """Where requests come from and which regions are blocked."""

    sanctioned_regions: SanctionedRegionsSpec = Field(default_factory=SanctionedRegionsSpec)
    country_headers: list[str] = Field(
        default_factory=lambda: ["CF-IPCountry", "X-Country-Code"],
        description="Headers carrying the client country, honoured only from trusted proxies.",
    )
    trusted_proxy_cidrs: list[str] = Field(
        default_factory=list, alias="trustedProxyCIDRs", description="Peers whose country headers are believed."
    )
    geoip_database: str | None = Field(
        default=None, description="Path of a MaxMind-format database in the gateway pod."
    )
    unknown_country: Literal["block", "allow"] = Field(
        default="block", description="What happens on commercial channels when the country is unknown."
    )
    apply_to_in_cluster: bool = Field(
        default=False, description="Also block sanctioned regions on in-cluster (vllm) channels."
    )


class AupSpec(ApiModel):
    """Which acceptable-use policy the gateway enforces before forwarding a request."""

    enforcement: Literal["provider-strictest", "per-channel", "off"] = Field(
        default="provider-strictest",
        description=(
            "provider-strictest = union of all bound commercial channels' policies; per-channel = "
            "the chosen channel's policy; off = none (only without commercial channels)."
        ),
    )


class AuditSpec(ApiModel):
    """The per-request audit log."""

    enabled: bool = Field(default=True, description="One audit row per request.")
    retention_days: int = Field(default=730, ge=1, le=36500, description="Days audit rows are kept.")
    log_prompt_content: bool = Field(
        default=False,
        description="Store prompt and completion text. Do not enable without customer disclosure.",
    )


class ByokSpec(ApiModel):
    """Whether customers may bring their own provider keys (byok-passthrough channels)."""

    scope: Literal["request-scoped", "never"] = Field(
        default="request-scoped",
        description="request-scoped = customer keys pass through per request, never stored; never = off.",
    )


class ResellerSpec(ApiModel):
    """Reseller disclosure towards customers."""

    disclosure_required: bool = Field(
        default=True, description="Publish /legal/llm-providers listing the resold providers."
    )
    operator_name: str | None = Field(default=None, description="Legal name shown on the disclosure page.")


class SecretStoreRef(ApiModel):
    """The External Secrets store holding the admin token."""

    kind: Literal["SecretStore", "ClusterSecretStore"] = "ClusterSecretStore"
    name: str = "vault-region1"


class RemoteRef(ApiModel):
    """Where the admin token lives in the secret store."""

    key: str = Field(default="", description="Path in the secret store, e.g. sovereign/<fqdn>/newapi/admin-token.")
    property: str = "ADMIN_API_TOKEN"


class ExternalSecretSpec(ApiModel):
    """The ExternalSecret that provisions the portal's admin token."""

    enabled: bool = True
    refresh_interval: str = "1h"
    secret_store_ref: SecretStoreRef = Field(default_factory=SecretStoreRef)
    remote_ref: RemoteRef = Field(default_factory=RemoteRef)
    target_secret_name: str = Field(
        default="catalyst-newapi-admin-token", description="Secret the portal reads the admin token from."
    )


class CatalystIntegrationSpec(ApiModel):
    """Integration with the Catalyst portal (signup hook, admin token)."""

    enabled: bool = Field(default=True, description="Provision the admin token for the portal's signup hook.")
    external_secret: ExternalSecretSpec = Field(default_factory=ExternalSecretSpec)


class NewAPIInstanceSpec(ApiModel):
    """One gateway deployment and the policy it enforces."""

    replicas: int = Field(default=1, ge=1, le=16, description="Gateway replicas (1-16).")
    image: str | None = Field(default=None, description="Gateway image; the operator's own image if unset.")
    ingress: IngressSpec | None = Field(default=None, description="Ingress hosts; no Ingress if unset.")
    database: DatabaseSpec = Field(default_factory=DatabaseSpec)
    valkey: ValkeySpec = Field(default_factory=ValkeySpec)
    auth: AuthSpec = Field(default_factory=AuthSpec)
    channel_selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Channels of this namespace bound to the instance; empty = all of them.",
    )
    tiers: dict[str, TierSpec] = Field(default_factory=dict, description="Customer tiers by name.")
    geo: GeoSpec = Field(default_factory=GeoSpec)
    aup: AupSpec = Field(default_factory=AupSpec)
    audit: AuditSpec = Field(default_factory=AuditSpec)
    byok: ByokSpec = Field(default_factory=ByokSpec)
    reseller: ResellerSpec = Field(default_factory=ResellerSpec)
    catalyst_integration: CatalystIntegrationSpec = Field(default_factory=CatalystIntegrationSpec)


class ExcludedChannel(ApiModel):
    """A Channel of the namespace that is not routed to, and why."""

    name: str
    reason: str


class NewAPIInstanceStatus(ApiModel):
    """What the operator observed and rendered for the instance."""

    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    bound_channels: list[str] = Field(default_factory=list)
    excluded_channels: list[ExcludedChannel] = Field(default_factory=list)
    routing_table_version: str | None = None
    ready_replicas: int | None = None
    external_secret: str | None = Field(default=None, description="Rendered, or why it was skipped.")


# --------------------------------------------------------------------------------------------
# Channel
# --------------------------------------------------------------------------------------------


class ModelPrice(ApiModel):
    """Prices of one model in integer micro-credits per 1M tokens."""

    input_per_million: MicroCredits = Field(description="Micro-credits per 1M input tokens.")
    output_per_million: MicroCredits = Field(description="Micro-credits per 1M output tokens.")


class PricingSpec(ApiModel):
    """Prices in integer micro-credits per 1M tokens; ``models`` overrides per client model."""

    input_per_million: MicroCredits = Field(default=0, description="Micro-credits per 1M input tokens.")
    output_per_million: MicroCredits = Field(default=0, description="Micro-credits per 1M output tokens.")
    models: dict[str, ModelPrice] = Field(default_factory=dict, description="Per-model overrides.")


class TimeoutsSpec(ApiModel):
    """Upstream timeouts."""

    connect_ms: int = Field(default=5000, ge=1, description="Upstream connect timeout (ms).")
    read_ms: int = Field(
        default=300000, ge=1, description="Upstream read timeout (ms): first byte and between chunks."
    )


class AttestationSpec(ApiModel):
    """Why this channel may be resold (mandatory)."""

    kind: Literal["in-cluster", "commercial-contract", "byok"] = Field(
        description="in-cluster (operator owns weights and hardware), commercial-contract, or byok."
    )
    owner: str | None = Field(default=None, description="Who runs the in-cluster inference (in-cluster).")
    account_id: str | None = Field(
        default=None, description="Provider-side account id of the operator (commercial-contract)."
    )
    contract_ref: str | None = Field(
        default=None, description="Reference to the signed reseller terms (commercial-contract)."
    )


ByokProvider = Literal["openai", "anthropic", "google"]
AupProvider = Literal["openai", "anthropic", "google", "in-cluster"]


class ChannelSpec(ApiModel):
    """One upstream the gateway can route to."""

    type: Literal["vllm", "openai-compatible", "anthropic", "byok-passthrough"] = Field(
        description="vllm (in-cluster), openai-compatible, anthropic, byok-passthrough."
    )
    endpoint: str | None = Field(
        default=None, description="Upstream base URL, e.g. http://vllm.vllm.svc:8000/v1 (not for byok)."
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None, description="Upstream API key (commercial types; never for byok-passthrough)."
    )
    models: list[str] = Field(min_length=1, description="Client-facing model names this channel serves.")
    model_mapping: dict[str, str] = Field(
        default_factory=dict, description="Client model name -> upstream model name."
    )
    priority: int = Field(default=0, description="Higher priority groups are tried first.")
    weight: int = Field(default=1, ge=1, le=1000, description="Weight inside a priority group.")
    tiers: list[str] = Field(default_factory=list, description="Tiers this channel serves; empty = all.")
    pricing: PricingSpec = Field(default_factory=PricingSpec)
    timeouts: TimeoutsSpec = Field(default_factory=TimeoutsSpec)
    allowed_providers: list[ByokProvider] = Field(
        default_factory=list, description="Providers a BYOK key may be used with (byok-passthrough)."
    )
    provider_endpoints: dict[str, str] = Field(
        default_factory=dict,
        description="byok-passthrough: provider -> base URL override (defaults to the public APIs).",
    )
    aup_provider: AupProvider | None = Field(
        default=None, description="AUP policy applied to this channel; derived from type if unset."
    )
    enabled: bool = Field(default=True)
    attestation: AttestationSpec = Field(description="Mandatory compliance attestation.")

    @field_validator("type", mode="before")
    @classmethod
    def _reject_subscription_types(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in CHANNEL_TYPES and SUBSCRIPTION_LOOKALIKE.search(value):
            raise ValueError(f"channel type {value!r} is not allowed: {SUBSCRIPTION_EXCLUDED_MESSAGE}")
        return value


class ChannelStatus(ApiModel):
    """Whether the channel is attested and valid, and what it serves."""

    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    attested: bool | None = None
    models_served: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# CustomerKey
# --------------------------------------------------------------------------------------------


class CustomerSpec(ApiModel):
    """The portal customer owning the key."""

    external_id: str = Field(min_length=1, description="The portal's user UUID (1:1 with a customer).")
    display_name: str | None = None


class SpendingCapSpec(ApiModel):
    """Spending limits in micro-credits; absent = no cap."""

    daily: MicroCredits | None = Field(default=None, description="Micro-credits per UTC day.")
    monthly: MicroCredits | None = Field(default=None, description="Micro-credits per calendar month.")


class RateLimitSpec(ApiModel):
    """Per-key rate limits; absent = the tier's defaults."""

    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute.")


class CustomerKeySpec(ApiModel):
    """One customer's API key and its budget."""

    instance_ref: LocalObjectReference = Field(description="The NewAPIInstance issuing the key.")
    customer: CustomerSpec
    tier: str = Field(min_length=1, description="A tier name of the instance.")
    credit_grant: MicroCredits | None = Field(
        default=None, description="Credit granted once at registration (micro-credits)."
    )
    spending_cap: SpendingCapSpec = Field(default_factory=SpendingCapSpec)
    rate_limit: RateLimitSpec = Field(default_factory=RateLimitSpec)
    allowed_models: list[str] = Field(default_factory=list, description="Further restricts the tier; empty = tier's.")
    expires_at: datetime | None = None
    rotation: int = Field(default=0, ge=0, description="Bump to issue a new key and revoke the old one.")
    suspended: bool = Field(default=False, description="Blocks the key while true.")


class UsageSnapshot(ApiModel):
    """Balance and usage as last read from the gateway (money in micro-credits)."""

    balance: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    spent_today: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    spent_this_month: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    requests_today: int | None = None
    updated_at: datetime | None = None


class CustomerKeyStatus(ApiModel):
    """The live key (prefix only, never the key) and its usage."""

    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    secret_name: str | None = None
    key_prefix: str | None = None
    key_id: str | None = None
    rotation: int | None = Field(default=None, description="The spec.rotation of the live key.")
    usage: UsageSnapshot | None = None


# --------------------------------------------------------------------------------------------
# The kinds
# --------------------------------------------------------------------------------------------


class KindInfo(BaseModel):
    """Static facts about a kind, used for CRDs, discovery and clients."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    printer_columns: list[dict[str, Any]]


class Resource(ApiModel):
    """A namespaced custom resource: apiVersion, kind, metadata, spec, status."""

    model_config = ConfigDict(extra="ignore")
    info: ClassVar[KindInfo]

    api_version: Literal["newapi.openova.io/v1alpha1"] = API_VERSION
    kind: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class NewAPIInstance(Resource):
    info: ClassVar[KindInfo] = KindInfo(
        kind="NewAPIInstance",
        plural="newapiinstances",
        singular="newapiinstance",
        short_names=["nai", "newapi"],
        printer_columns=[
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Routes", "type": "string", "jsonPath": ".status.routingTableVersion"},
            {"name": "Host", "type": "string", "jsonPath": ".spec.ingress.host", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )
    kind: Literal["NewAPIInstance"] = "NewAPIInstance"
    spec: NewAPIInstanceSpec
    status: NewAPIInstanceStatus | None = None


class Channel(Resource):
    info: ClassVar[KindInfo] = KindInfo(
        kind="Channel",
        plural="channels",
        singular="channel",
        short_names=["nch"],
        printer_columns=[
            {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
            {"name": "Attestation", "type": "string", "jsonPath": ".spec.attestation.kind"},
            {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Endpoint", "type": "string", "jsonPath": ".spec.endpoint", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )
    kind: Literal["Channel"] = "Channel"
    spec: ChannelSpec
    status: ChannelStatus | None = None


class CustomerKey(Resource):
    info: ClassVar[KindInfo] = KindInfo(
        kind="CustomerKey",
        plural="customerkeys",
        singular="customerkey",
        short_names=["ck", "nkey"],
        printer_columns=[
            {"name": "Instance", "type": "string", "jsonPath": ".spec.instanceRef.name"},
            {"name": "Customer", "type": "string", "jsonPath": ".spec.customer.externalId"},
            {"name": "Tier", "type": "string", "jsonPath": ".spec.tier"},
            {"name": "Prefix", "type": "string", "jsonPath": ".status.keyPrefix"},
            {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    )
    kind: Literal["CustomerKey"] = "CustomerKey"
    spec: CustomerKeySpec
    status: CustomerKeyStatus | None = None


KINDS: tuple[type[Resource], ...] = (NewAPIInstance, Channel, CustomerKey)
KIND_BY_NAME: dict[str, type[Resource]] = {k.info.kind: k for k in KINDS}
