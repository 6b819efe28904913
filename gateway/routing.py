"""Routing: requested model + caller -> the ordered list of channels to try. Pure; the RNG is injected.

Order of decisions:
1. the caller's tier must exist (when the policy defines tiers);
2. the key's ``allowedModels`` and the tier's ``allowedModels`` must admit the requested model;
3. the tier's ``modelDowngrades`` maps the requested model to the model actually served;
4. candidates: channels listing the served model that the tier may use (channel ``tiers``, tier
   ``allowedChannels``, free tiers only in-cluster); BYOK requests only byok-passthrough channels
   allowing the provider, all other requests never those;
5. highest priority group first, weighted random order inside a group.

Circuit breakers are applied by the caller while walking the list (state is not pure).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .keys import KeyInfo
from .snapshot import CompiledChannel, Group, Snapshot


class RoutingError(Exception):
    """No route. ``kind`` is ``tier_unknown`` (403) or ``model_not_found`` (404)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(slots=True)
class RoutePlan:
    requested: str
    served: str
    candidates: list[CompiledChannel]


def model_not_found(model: str) -> RoutingError:
    return RoutingError(
        "model_not_found", f"The model `{model}` does not exist or you do not have access to it."
    )


def weighted_order(group: Group, rng: random.Random) -> list[CompiledChannel]:
    """The channels of ``group`` in weighted random order (sampling without replacement)."""
    channels = list(group.channels)
    if len(channels) == 1:
        return channels
    weights = list(group.weights)
    out: list[CompiledChannel] = []
    total = sum(weights)
    while channels:
        x = rng.random() * total
        i = 0
        acc = weights[0]
        while acc <= x and i < len(weights) - 1:
            i += 1
            acc += weights[i]
        out.append(channels.pop(i))
        total -= weights.pop(i)
    return out


def plan(
    snapshot: Snapshot,
    model: str,
    key: KeyInfo,
    rng: random.Random,
    byok: bool = False,
    byok_provider: str | None = None,
) -> RoutePlan:
    """Candidates for ``model`` requested with ``key``; raises :class:`RoutingError` when there are none.

    ``byok``: only byok-passthrough channels (allowing ``byok_provider`` when given)."""
    view = snapshot.view(key.tier)
    if view is None:
        raise RoutingError(
            "tier_unknown",
            f"Your key's tier {key.tier!r} is not configured on this gateway; ask the operator to fix the key.",
        )
    if key.allowed_models and model not in key.allowed_models:
        raise model_not_found(model)
    spec = view.spec
    served = model
    if spec is not None:
        if spec.allowed_models and model not in spec.allowed_models:
            raise model_not_found(model)
        served = spec.model_downgrades.get(model, model)
    groups = view.byok_candidates.get(served) if byok else view.candidates.get(served)
    if not groups:
        raise model_not_found(model)
    candidates: list[CompiledChannel] = []
    for group in groups:
        if byok_provider is not None and byok:
            members = [c for c in group.channels if byok_provider in c.route.allowed_providers]
            if not members:
                continue
            group = Group(group.priority, tuple(members), tuple(c.weight for c in members))
        candidates.extend(weighted_order(group, rng))
    if not candidates:
        raise model_not_found(model)
    return RoutePlan(model, served, candidates)


def models_for(snapshot: Snapshot, key: KeyInfo) -> list[str]:
    """The client model names ``key`` may request (for ``GET /v1/models``), sorted."""
    view = snapshot.view(key.tier)
    if view is None:
        return []
    if key.allowed_models:
        return [m for m in view.models if m in key.allowed_models]
    return list(view.models)
