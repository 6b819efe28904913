"""Which Channels an instance binds, which it excludes, and why (pure).

A Channel of the instance's namespace that matches ``spec.channelSelector`` is *bound* (it
reaches the routing table) only when all of these hold, checked in this order; the first
failing one is the reason it is *excluded* (``status.excludedChannels``):

1. ``Invalid``: its spec parses and passes the single-object rules (``check_channel``);
2. ``Unattested``: its attestation passes the attestation rules;
3. ``Disabled``: ``spec.enabled`` is true;
4. ``SecretNotFound`` / ``SecretKeyNotFound``: the Secret (and key) of ``spec.secretRef`` exists;
5. ``UnknownTier``: every tier in ``spec.tiers`` is defined on the instance;
6. ``InvalidRoute``: it makes a valid routing-table entry (e.g. ``endpoint`` is an http(s) URL,
   ``modelMapping`` maps only listed models);
7. ``BindingRule``: the rules between the instance and its channels (``check_binding``): a
   non-vllm channel serving a free tier; a commercial channel while ``aup.enforcement`` is off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from newapi_operator.api.compliance import Violation, check_binding, check_channel, violations_from_validation_error
from newapi_operator.api.v1alpha1 import COMMERCIAL_CHANNEL_TYPES, ChannelSpec, NewAPIInstanceSpec

from .selectors import matches

#: Rules of ``check_channel`` that are about the attestation (the ``Attested`` condition).
ATTESTATION_RULES = frozenset({
    "attestation-kind-fits-type", "in-cluster-owner", "commercial-account-id", "commercial-contract-ref",
})


@dataclass(frozen=True)
class ChannelInput:
    """What the operator knows about one Channel object (a snapshot of the watched object)."""

    name: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)
    generation: int | None = None
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ChannelInput:
        meta = body.get("metadata") or {}
        return cls(
            name=str(meta.get("name", "")),
            spec=dict(body.get("spec") or {}),
            labels=dict(meta.get("labels") or {}),
            generation=meta.get("generation"),
            deleting=bool(meta.get("deletionTimestamp")),
        )


#: A Secret's ``data`` (base64 values) by Secret name; None = the Secret does not exist.
SecretData = Mapping[str, Mapping[str, str] | None]


@dataclass(frozen=True)
class ChannelVerdict:
    """The single-channel judgement: what the Channel's own conditions report."""

    name: str
    spec: ChannelSpec | None
    schema_problems: tuple[Violation, ...] = ()
    rule_problems: tuple[Violation, ...] = ()
    attestation_problems: tuple[Violation, ...] = ()
    credential: str | None = None
    credential_problem: tuple[str, str] | None = None  # (reason, message)

    @property
    def valid(self) -> bool:
        return self.spec is not None and not self.schema_problems and not self.rule_problems

    @property
    def attested(self) -> bool:
        return self.spec is not None and not self.attestation_problems and not any(
            v.field.startswith("spec.attestation") for v in self.schema_problems)

    @property
    def enabled(self) -> bool:
        return self.spec is not None and self.spec.enabled

    @property
    def routable(self) -> bool:
        """Valid, attested, enabled and with its credential at hand (when it needs one)."""
        return self.valid and self.attested and self.enabled and self.credential_problem is None

    def exclusion(self) -> tuple[str, str] | None:
        """Why the channel cannot be routed to, as (reason, message); None when it can."""
        if self.spec is None or self.schema_problems or self.rule_problems:
            problems = [*self.schema_problems, *self.rule_problems]
            return "Invalid", "; ".join(str(v) for v in problems)
        if not self.attested:
            return "Unattested", "; ".join(str(v) for v in self.attestation_problems)
        if not self.spec.enabled:
            return "Disabled", "spec.enabled is false"
        if self.credential_problem is not None:
            return self.credential_problem
        return None


def _parse_spec(raw: Mapping[str, Any]) -> tuple[ChannelSpec | None, list[Violation]]:
    try:
        return ChannelSpec.model_validate(dict(raw)), []
    except ValidationError as err:
        return None, violations_from_validation_error(err, prefix="spec")


def evaluate_channel(channel: ChannelInput, secrets: SecretData) -> ChannelVerdict:
    """Judge one Channel on its own: schema, rules, attestation, enabled, upstream credential."""
    spec, schema = _parse_spec(channel.spec)
    if spec is None:
        return ChannelVerdict(channel.name, None, schema_problems=tuple(schema))
    violations = check_channel(spec)
    attestation = tuple(v for v in violations if v.rule in ATTESTATION_RULES)
    rules = tuple(v for v in violations if v.rule not in ATTESTATION_RULES)
    credential: str | None = None
    problem: tuple[str, str] | None = None
    ref = spec.secret_ref
    if ref is not None and spec.type != "byok-passthrough":
        data = secrets.get(ref.name)
        if data is None:
            problem = ("SecretNotFound",
                       f"spec.secretRef: Secret {ref.name!r} does not exist in this namespace; create it with the "
                       f"upstream API key under key {ref.key!r}")
        elif not data.get(ref.key):
            keys = ", ".join(sorted(data)) or "none"
            problem = ("SecretKeyNotFound",
                       f"spec.secretRef: Secret {ref.name!r} has no non-empty key {ref.key!r} (keys: {keys}); "
                       "put the upstream API key there or fix spec.secretRef.key")
        else:
            credential = str(data[ref.key])
    return ChannelVerdict(channel.name, spec, (), rules, attestation, credential, problem)


@dataclass(frozen=True)
class Excluded:
    name: str
    reason: str
    message: str

    def as_status(self) -> dict[str, str]:
        """The ``status.excludedChannels`` entry."""
        return {"name": self.name, "reason": f"{self.reason}: {self.message}"}


@dataclass(frozen=True)
class BoundChannel:
    name: str
    spec: ChannelSpec
    credential: str | None  # base64, as in the source Secret's data


@dataclass
class Binding:
    """The outcome for one instance: bound channels (sorted by name), exclusions, instance-level problems."""

    bound: list[BoundChannel] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def bound_names(self) -> list[str]:
        return [b.name for b in self.bound]


def selected(instance: NewAPIInstanceSpec, channels: Sequence[ChannelInput]) -> list[ChannelInput]:
    """The channels of the namespace the instance's selector picks (not being deleted), by name."""
    return sorted((c for c in channels if not c.deleting and matches(instance.channel_selector, c.labels)),
                  key=lambda c: c.name)


def bind(
    instance_name: str,
    instance: NewAPIInstanceSpec,
    channels: Sequence[ChannelInput],
    secrets: SecretData,
    verdicts: Mapping[str, ChannelVerdict] | None = None,
) -> Binding:
    """Decide, for every selected channel, whether it is bound or excluded (see the module doc)."""
    from .routes import route_problems  # routes imports this module's types

    result = Binding()
    candidates: list[BoundChannel] = []
    defined = sorted(instance.tiers)
    for ch in selected(instance, channels):
        verdict = (verdicts or {}).get(ch.name) or evaluate_channel(ch, secrets)
        why = verdict.exclusion()
        if why is not None:
            result.excluded.append(Excluded(ch.name, *why))
            continue
        assert verdict.spec is not None
        unknown = [t for t in verdict.spec.tiers if t not in instance.tiers]
        if unknown:
            result.excluded.append(Excluded(
                ch.name, "UnknownTier",
                f"spec.tiers: {', '.join(repr(t) for t in unknown)} not defined on NewAPIInstance "
                f"{instance_name} (defined: {', '.join(defined) or 'none'}); fix the name or define the tier"))
            continue
        problems = route_problems(instance_name, instance, ch.name, verdict.spec)
        if problems:
            result.excluded.append(Excluded(ch.name, "InvalidRoute", "; ".join(problems)))
            continue
        candidates.append(BoundChannel(ch.name, verdict.spec, verdict.credential))

    violations = check_binding(instance, [(c.name, c.spec) for c in candidates])
    excluded_now: dict[str, list[str]] = {}
    for v in violations:
        if v.field.startswith("Channel/"):
            name = v.field.split(" ", 1)[0].removeprefix("Channel/")
            excluded_now.setdefault(name, []).append(f"{v.field.split(' ', 1)[-1]}: {v.message}")
        elif v.rule == "aup-off-with-commercial":
            for c in candidates:
                if c.spec.enabled and c.spec.type in COMMERCIAL_CHANNEL_TYPES:
                    excluded_now.setdefault(c.name, []).append(f"NewAPIInstance {instance_name} {v}")
            result.problems.append(str(v))
        else:
            result.problems.append(str(v))
    for c in candidates:
        if c.name in excluded_now:
            result.excluded.append(Excluded(c.name, "BindingRule", "; ".join(excluded_now[c.name])))
        else:
            result.bound.append(c)
    result.excluded.sort(key=lambda e: e.name)
    return result
