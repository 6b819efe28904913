"""Compliance and consistency rules over the v1alpha1 models.

Pure functions, no I/O. Each returns a list of :class:`Violation`; an empty list means valid.
A violation names the field (``spec.attestation.accountId``) and says what to do.

Where a rule only involves one object it is also written as a CEL rule in the CRD
(``x-kubernetes-validations``, see ``newapi_operator.crdgen``) so a real API server rejects a bad
object even while the operator is down. Rules that need two objects (free tiers and channel types,
``aup.enforcement: off`` with commercial channels bound, a key's tier) are enforced here, by the
operator and by its validating webhook.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from .v1alpha1 import (
    COMMERCIAL_CHANNEL_TYPES,
    DEFAULT_SANCTIONED_REGIONS,
    ChannelSpec,
    CustomerKeySpec,
    NewAPIInstanceSpec,
    Resource,
    TierSpec,
)


@dataclass(frozen=True)
class Violation:
    """One broken rule: the field at fault and what to do about it."""

    field: str
    message: str
    rule: str = ""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


R = TypeVar("R", bound=Resource)

_TYPE_TO_ATTESTATION = {
    "vllm": "in-cluster",
    "openai-compatible": "commercial-contract",
    "anthropic": "commercial-contract",
    "byok-passthrough": "byok",
}


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def violations_from_validation_error(err: ValidationError, prefix: str = "") -> list[Violation]:
    """Turn pydantic's errors into violations with wire (camelCase) field paths."""
    result = []
    for e in err.errors():
        field = _loc(e["loc"])
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            msg = "required field is missing"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field; check the spelling against the CRD reference"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        result.append(Violation(field or "<root>", msg, rule="schema"))
    return result


def parse(kind: type[R], obj: dict[str, Any]) -> tuple[R | None, list[Violation]]:
    """Parse a whole object (``apiVersion``, ``kind``, ``metadata``, ``spec``) into its model."""
    try:
        return kind.model_validate(obj), []
    except ValidationError as err:
        return None, violations_from_validation_error(err)


# --------------------------------------------------------------------------------------------
# Channel
# --------------------------------------------------------------------------------------------


def check_channel(spec: ChannelSpec) -> list[Violation]:
    """Rules that involve one Channel only (all of them are also CEL rules in the CRD)."""
    out: list[Violation] = []
    att = spec.attestation
    want = _TYPE_TO_ATTESTATION[spec.type]
    if att.kind != want:
        out.append(Violation(
            "spec.attestation.kind",
            f"{_a(spec.type)} channel needs attestation kind {want!r}, not {att.kind!r}",
            rule="attestation-kind-fits-type",
        ))
    if att.kind == "in-cluster" and not att.owner:
        out.append(Violation(
            "spec.attestation.owner",
            "required for an in-cluster attestation: name who owns the weights and the inference hardware",
            rule="in-cluster-owner",
        ))
    if att.kind == "commercial-contract":
        if not att.account_id:
            out.append(Violation(
                "spec.attestation.accountId",
                "required for a commercial-contract attestation: the provider-side account id of the "
                "operator's paid account",
                rule="commercial-account-id",
            ))
        if not att.contract_ref:
            out.append(Violation(
                "spec.attestation.contractRef",
                "required for a commercial-contract attestation: a reference to the signed reseller terms",
                rule="commercial-contract-ref",
            ))
    if spec.type != "byok-passthrough" and not spec.endpoint:
        out.append(Violation(
            "spec.endpoint",
            f"required for {_a(spec.type)} channel: the upstream base URL, e.g. https://api.example.com/v1",
            rule="endpoint-required",
        ))
    if spec.type in COMMERCIAL_CHANNEL_TYPES and spec.secret_ref is None:
        out.append(Violation(
            "spec.secretRef",
            f"required for {_a(spec.type)} channel: the Secret (name, key) holding the operator's API key",
            rule="commercial-secret-required",
        ))
    if spec.type == "byok-passthrough":
        if spec.secret_ref is not None:
            out.append(Violation(
                "spec.secretRef",
                "must be absent on a byok-passthrough channel: the customer's key comes with each "
                "request and is never stored; remove secretRef",
                rule="byok-no-secret",
            ))
        if not spec.allowed_providers:
            out.append(Violation(
                "spec.allowedProviders",
                "a byok-passthrough channel needs at least one provider (openai, anthropic, google)",
                rule="byok-providers",
            ))
    return out


def validate_channel(obj: dict[str, Any]) -> list[Violation]:
    """Parse and check one Channel object."""
    from .v1alpha1 import Channel

    model, errors = parse(Channel, obj)
    if model is None:
        return errors
    return check_channel(model.spec)


# --------------------------------------------------------------------------------------------
# NewAPIInstance
# --------------------------------------------------------------------------------------------


def check_instance(spec: NewAPIInstanceSpec) -> list[Violation]:
    """Rules that involve one NewAPIInstance only (all of them are also CEL rules in the CRD)."""
    out: list[Violation] = []
    geo = spec.geo.sanctioned_regions
    removed = [r for r in DEFAULT_SANCTIONED_REGIONS if r not in geo.block]
    if removed and not (geo.allow_relaxation and geo.justification.strip()):
        out.append(Violation(
            "spec.geo.sanctionedRegions.block",
            f"removes default sanctioned region(s) {', '.join(removed)}; relaxing the baseline needs "
            "allowRelaxation: true and a non-empty justification reviewed by counsel",
            rule="geo-relaxation",
        ))
    if spec.replicas > 1:
        if not spec.database.existing_secret:
            out.append(Violation(
                "spec.database.existingSecret",
                f"replicas: {spec.replicas} needs a shared PostgreSQL: set database.existingSecret "
                "(embedded SQLite serves one replica only)",
                rule="replicas-need-database",
            ))
        if not spec.valkey.url:
            out.append(Violation(
                "spec.valkey.url",
                f"replicas: {spec.replicas} needs a shared Valkey/Redis for limits: set valkey.url "
                "(in-process limits serve one replica only)",
                rule="replicas-need-valkey",
            ))
    for name, tier in spec.tiers.items():
        for model, target in tier.model_downgrades.items():
            if not target:
                out.append(Violation(
                    f"spec.tiers.{name}.modelDowngrades.{model}",
                    "empty target model; name the model to serve instead",
                    rule="downgrade-target",
                ))
    return out


def validate_instance(obj: dict[str, Any]) -> list[Violation]:
    """Parse and check one NewAPIInstance object."""
    from .v1alpha1 import NewAPIInstance

    model, errors = parse(NewAPIInstance, obj)
    if model is None:
        return errors
    return check_instance(model.spec)


# --------------------------------------------------------------------------------------------
# Rules across objects: an instance and the channels bound to it; a key and its tier
# --------------------------------------------------------------------------------------------


def free_tiers(spec: NewAPIInstanceSpec) -> set[str]:
    return {name for name, tier in spec.tiers.items() if tier.free}


def channel_serves_tier(channel: ChannelSpec, tier: str, tier_spec: TierSpec | None, channel_name: str) -> bool:
    """Whether routing may send a request of ``tier`` to the channel.

    A channel with an empty ``tiers`` list serves every tier **except free ones** unless it is an
    in-cluster channel: free/promotional capacity is only ever operator-funded.
    """
    if tier_spec is not None and tier_spec.allowed_channels and channel_name not in tier_spec.allowed_channels:
        return False
    if tier_spec is not None and tier_spec.free and channel.type != "vllm":
        return False
    return not channel.tiers or tier in channel.tiers


def check_binding(
    instance: NewAPIInstanceSpec, channels: Iterable[tuple[str, ChannelSpec]]
) -> list[Violation]:
    """Rules between an instance and the channels it would bind.

    Violations name the object: ``Channel/<name> spec.tiers`` or ``spec.aup.enforcement``.
    """
    out: list[Violation] = []
    channels = list(channels)
    free = free_tiers(instance)
    for name, ch in channels:
        if ch.type == "vllm":
            continue
        for tier in ch.tiers:
            if tier in free:
                out.append(Violation(
                    f"Channel/{name} spec.tiers",
                    f"tier {tier!r} is a free/promotional tier and may only be served by in-cluster "
                    f"(vllm) channels, not by a {ch.type} channel; remove {tier!r} from spec.tiers",
                    rule="free-tier-in-cluster",
                ))
    by_name = dict(channels)
    for tier_name in sorted(free):
        for ch_name in instance.tiers[tier_name].allowed_channels:
            listed = by_name.get(ch_name)
            if listed is not None and listed.type != "vllm":
                out.append(Violation(
                    f"spec.tiers.{tier_name}.allowedChannels",
                    f"free tier {tier_name!r} lists {listed.type} channel {ch_name!r}; free tiers may only "
                    "use in-cluster (vllm) channels",
                    rule="free-tier-in-cluster",
                ))
    commercial = sorted(n for n, ch in channels if ch.enabled and ch.type in COMMERCIAL_CHANNEL_TYPES)
    if instance.aup.enforcement == "off" and commercial:
        out.append(Violation(
            "spec.aup.enforcement",
            "'off' is not allowed while commercial channels are bound "
            f"({', '.join(commercial)}); use provider-strictest or per-channel",
            rule="aup-off-with-commercial",
        ))
    return out


def check_customer_key(spec: CustomerKeySpec, instance: NewAPIInstanceSpec | None) -> list[Violation]:
    """Rules for a CustomerKey against the instance that issues it."""
    out: list[Violation] = []
    tier: TierSpec | None = None
    if instance is not None:
        tier = instance.tiers.get(spec.tier)
        if tier is None and instance.tiers:
            out.append(Violation(
                "spec.tier",
                f"tier {spec.tier!r} is not defined on NewAPIInstance {spec.instance_ref.name}; "
                f"defined tiers: {', '.join(sorted(instance.tiers))}",
                rule="tier-exists",
            ))
    finite = (
        spec.credit_grant is not None
        or spec.spending_cap.daily is not None
        or spec.spending_cap.monthly is not None
    )
    if not finite and not (tier is not None and tier.unlimited_credit):
        out.append(Violation(
            "spec.creditGrant",
            "a key needs a finite budget: set creditGrant (a small starting credit) or "
            "spendingCap.daily/monthly, unless its tier is marked unlimitedCredit",
            rule="finite-budget",
        ))
    return out


def validate_customer_key(obj: dict[str, Any], instance: NewAPIInstanceSpec | None = None) -> list[Violation]:
    """Parse and check one CustomerKey object (against its instance when known)."""
    from .v1alpha1 import CustomerKey

    model, errors = parse(CustomerKey, obj)
    if model is None:
        return errors
    return check_customer_key(model.spec, instance)


def validate_object(obj: dict[str, Any]) -> list[Violation]:
    """Single-object validation by ``kind`` (what the webhook and CRD CEL rules cover)."""
    kind = obj.get("kind")
    if kind == "Channel":
        return validate_channel(obj)
    if kind == "NewAPIInstance":
        return validate_instance(obj)
    if kind == "CustomerKey":
        return validate_customer_key(obj)
    return [Violation("kind", f"unknown kind {kind!r}; expected NewAPIInstance, Channel or CustomerKey")]
