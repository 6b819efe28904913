"""A NewAPIInstance's status (pure): conditions ``Ready`` and ``Degraded`` and the rendered facts.

``Ready`` (is the gateway serving with the current routing table?):

- ``Available``: children applied and at least one gateway replica ready;
- ``Progressing``: children applied, no replica ready yet;
- ``InvalidSpec``: the spec breaks a rule; nothing was (re-)rendered;
- ``RoutingTableTooLarge`` / ``ApplyFailed``: rendering or writing a child failed.

``Degraded`` (is anything less than asked for?): ``ChannelsExcluded``, ``TiersDropped``,
``BindingRules``, ``ReplicasUnavailable`` (fewer ready than ``spec.replicas``), ``InvalidSpec``,
``ApplyFailed``; ``AsExpected`` when nothing is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .conditions import Cond, merge_conditions


@dataclass
class InstanceOutcome:
    """What one reconcile of an instance found and did."""

    generation: int | None
    replicas: int
    ready_replicas: int = 0
    error_reason: str | None = None  # InvalidSpec, RoutingTableTooLarge, ApplyFailed
    error_message: str = ""
    bound: list[str] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    binding_problems: list[str] = field(default_factory=list)  # instance-level cross-object rules
    tier_notes: list[str] = field(default_factory=list)  # tiers left out of the routing table
    routing_table_version: str | None = None
    external_secret: str | None = None


def instance_conditions(o: InstanceOutcome) -> list[Cond]:
    if o.error_reason is not None:
        ready = Cond("Ready", "False", o.error_reason, o.error_message)
        degraded = Cond("Degraded", "True", o.error_reason, o.error_message)
        return [ready, degraded]
    if o.ready_replicas >= 1:
        ready = Cond("Ready", "True", "Available",
                     f"{o.ready_replicas}/{o.replicas} gateway replicas ready; routing table {o.routing_table_version} "
                     f"with {len(o.bound)} channel(s)")
    else:
        ready = Cond("Ready", "False", "Progressing",
                     f"children applied; waiting for gateway replicas (0/{o.replicas} ready)")
    reasons: list[tuple[str, str]] = []
    if o.excluded:
        listed = "; ".join(f"{e['name']} ({e['reason'].split(':', 1)[0]})" for e in o.excluded)
        reasons.append(("ChannelsExcluded", f"{len(o.excluded)} channel(s) excluded: {listed}; see "
                                            "status.excludedChannels"))
    if o.tier_notes:
        reasons.append(("TiersDropped", "; ".join(o.tier_notes)))
    if o.binding_problems:
        reasons.append(("BindingRules", "; ".join(o.binding_problems)))
    if 0 < o.ready_replicas < o.replicas:
        reasons.append(("ReplicasUnavailable", f"{o.ready_replicas}/{o.replicas} gateway replicas ready"))
    if reasons:
        degraded = Cond("Degraded", "True", reasons[0][0], " | ".join(m for _, m in reasons))
    else:
        degraded = Cond("Degraded", "False", "AsExpected", "every selected channel is bound")
    return [ready, degraded]


def instance_status(o: InstanceOutcome, current: dict[str, Any] | None, now: str | None = None) -> dict[str, Any]:
    """The ``status`` document; on errors the last rendered facts are kept from ``current``."""
    current = current or {}
    status: dict[str, Any] = {
        "conditions": merge_conditions(current.get("conditions"), instance_conditions(o), o.generation, now),
        "observedGeneration": o.generation,
        "readyReplicas": o.ready_replicas,
    }
    if o.error_reason is not None:
        for key in ("boundChannels", "excludedChannels", "routingTableVersion", "externalSecret"):
            if key in current:
                status[key] = current[key]
        return status
    status["boundChannels"] = list(o.bound)
    status["excludedChannels"] = list(o.excluded)
    status["routingTableVersion"] = o.routing_table_version
    status["externalSecret"] = o.external_secret
    return status
