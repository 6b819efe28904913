"""A Channel's status: conditions ``Attested``, ``Valid``, ``Ready`` (pure).

- ``Attested``: the attestation fits the channel type and names what it must (owner, account,
  contract). Reasons ``Attested`` / ``AttestationInvalid`` / ``SpecInvalid`` (cannot tell).
- ``Valid``: the spec passes the schema and every other single-object rule. Reasons ``Valid`` /
  ``SpecInvalid``.
- ``Ready``: valid, attested, enabled, and its upstream credential is at hand. Reasons
  ``Routable`` / ``Invalid`` / ``Unattested`` / ``Disabled`` / ``SecretNotFound`` / ``SecretKeyNotFound``.
  Whether an instance binds it (selector, tiers, cross-object rules) is in the instance's status.
"""

from __future__ import annotations

from typing import Any

from .binding import ChannelVerdict
from .conditions import Cond, merge_conditions


def channel_conditions(verdict: ChannelVerdict) -> list[Cond]:
    """The three conditions for a verdict."""
    if verdict.spec is None and not any(v.field.startswith("spec.attestation") for v in verdict.schema_problems):
        attested = Cond("Attested", "Unknown", "SpecInvalid", "the spec does not parse; see the Valid condition")
    elif verdict.attested:
        assert verdict.spec is not None
        attested = Cond("Attested", "True", "Attested", f"attestation kind {verdict.spec.attestation.kind}")
    else:
        problems = [*verdict.attestation_problems, *(v for v in verdict.schema_problems
                                                     if v.field.startswith("spec.attestation"))]
        attested = Cond("Attested", "False", "AttestationInvalid", "; ".join(str(v) for v in problems))
    problems = [*verdict.schema_problems, *verdict.rule_problems]
    if verdict.spec is not None and not problems:
        valid = Cond("Valid", "True", "Valid", "the spec passes every rule")
    else:
        valid = Cond("Valid", "False", "SpecInvalid", "; ".join(str(v) for v in problems))
    why = verdict.exclusion()
    if why is None:
        ready = Cond("Ready", "True", "Routable", "valid, attested, enabled; instances whose selector matches bind it")
    else:
        ready = Cond("Ready", "False", why[0], why[1])
    return [attested, valid, ready]


def channel_status(
    verdict: ChannelVerdict, generation: int | None, current: dict[str, Any] | None, now: str | None = None
) -> dict[str, Any]:
    """The full ``status`` document (the operator writes it only when it differs from ``current``)."""
    current = current or {}
    return {
        "conditions": merge_conditions(current.get("conditions"), channel_conditions(verdict), generation, now),
        "observedGeneration": generation,
        "attested": verdict.attested,
        "modelsServed": list(verdict.spec.models) if verdict.spec is not None else [],
    }
