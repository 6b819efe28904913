"""An immutable, compiled view of one routing table plus the upstream credentials.

Built once per reload (:func:`compile_snapshot`), then only read on the hot path: every lookup the
router needs is a dict access. A request keeps the snapshot it started with until it ends, so a
reload never changes a request or a stream midway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from newapi_operator.api.v1alpha1 import TierSpec

from .routing_table import ChannelRoute, RoutingTable, WireFormat


@dataclass(frozen=True, slots=True, eq=False)
class CompiledChannel:
    """A channel ready for the hot path. ``auth_headers`` holds the upstream credential headers."""

    name: str
    route: ChannelRoute
    type: str
    format: WireFormat
    base_url: str
    model_mapping: Mapping[str, str]
    auth_headers: Mapping[str, str]
    connect_timeout: float
    read_timeout: float
    priority: int
    weight: int
    commercial: bool
    byok: bool

    def upstream_model(self, served_model: str) -> str:
        return self.model_mapping.get(served_model, served_model)

    def __repr__(self) -> str:  # never show auth_headers
        return f"CompiledChannel({self.name!r}, {self.type}, {self.base_url})"


@dataclass(frozen=True, slots=True)
class Group:
    """Channels of one priority inside a candidate list, with their weights."""

    priority: int
    channels: tuple[CompiledChannel, ...]
    weights: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TierView:
    """What one tier may use: served model -> candidate groups (highest priority first)."""

    name: str
    spec: TierSpec | None
    candidates: Mapping[str, tuple[Group, ...]]
    byok_candidates: Mapping[str, tuple[Group, ...]]
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """One routing table compiled with one set of credentials."""

    table: RoutingTable
    version: str
    channels: Mapping[str, CompiledChannel]
    tiers: Mapping[str, TierView]
    #: the view used when the policy defines no tiers
    open_view: TierView
    known_models: frozenset[str]
    #: channels dropped from routing, with the reason (e.g. credential missing)
    unusable: Mapping[str, str] = field(default_factory=dict)

    @property
    def tiered(self) -> bool:
        return bool(self.tiers)

    def view(self, tier: str) -> TierView | None:
        """The view for a key's tier; ``None`` when tiers are defined and ``tier`` is not one of them."""
        if not self.tiers:
            return self.open_view
        return self.tiers.get(tier)


def _auth_headers(fmt: WireFormat, key: str | None) -> dict[str, str]:
    if not key:
        return {}
    if fmt == "anthropic":
        return {"x-api-key": key}
    return {"Authorization": f"Bearer {key}"}


def _compile_channel(ch: ChannelRoute, credentials: Mapping[str, str]) -> CompiledChannel | str:
    byok = ch.type == "byok-passthrough"
    fmt = ch.effective_format()
    key: str | None = None
    if ch.credential:
        key = credentials.get(ch.credential)
        if key is None:
            return f"credential {ch.credential!r} is not in the upstream credentials"
    return CompiledChannel(
        name=ch.name,
        route=ch,
        type=ch.type,
        format=fmt,
        base_url=(ch.endpoint or "").rstrip("/"),
        model_mapping=dict(ch.model_mapping),
        auth_headers=_auth_headers(fmt, key),
        connect_timeout=ch.timeouts.connect_ms / 1000,
        read_timeout=ch.timeouts.read_ms / 1000,
        priority=ch.priority,
        weight=ch.weight,
        commercial=ch.commercial,
        byok=byok,
    )


def _groups(channels: list[CompiledChannel]) -> tuple[Group, ...]:
    by_prio: dict[int, list[CompiledChannel]] = {}
    for c in channels:
        by_prio.setdefault(c.priority, []).append(c)
    return tuple(
        Group(p, tuple(cs), tuple(c.weight for c in cs)) for p, cs in sorted(by_prio.items(), reverse=True)
    )


def _view(name: str, spec: TierSpec | None, channels: list[CompiledChannel]) -> TierView:
    allowed = [c for c in channels if _tier_may_use(name, spec, c)]
    regular: dict[str, list[CompiledChannel]] = {}
    byok: dict[str, list[CompiledChannel]] = {}
    for c in allowed:
        target = byok if c.byok else regular
        for m in c.route.models:
            target.setdefault(m, []).append(c)
    candidates = {m: _groups(cs) for m, cs in regular.items()}
    byok_candidates = {m: _groups(cs) for m, cs in byok.items()}
    names = set(candidates) | set(byok_candidates)
    if spec is not None:
        names |= {src for src, dst in spec.model_downgrades.items() if dst in candidates or dst in byok_candidates}
        if spec.allowed_models:
            names &= set(spec.allowed_models)
    return TierView(name, spec, candidates, byok_candidates, tuple(sorted(names)))


def _tier_may_use(name: str, spec: TierSpec | None, c: CompiledChannel) -> bool:
    if spec is None:
        return True
    if c.route.tiers and name not in c.route.tiers:
        return False
    if spec.allowed_channels and c.name not in spec.allowed_channels:
        return False
    return not (spec.free and c.type != "vllm")


def compile_snapshot(table: RoutingTable, credentials: Mapping[str, str]) -> Snapshot:
    """Compile a validated table with the current credentials. Channels whose credential is missing are
    left out of routing (listed in ``unusable``) rather than failing the whole table: the ConfigMap and
    the Secret are updated independently and may briefly disagree."""
    compiled: dict[str, CompiledChannel] = {}
    unusable: dict[str, str] = {}
    for ch in table.channels:
        result = _compile_channel(ch, credentials)
        if isinstance(result, str):
            unusable[ch.name] = result
        else:
            compiled[ch.name] = result
    usable = list(compiled.values())
    tiers = {name: _view(name, spec, usable) for name, spec in table.policy.tiers.items()}
    open_view = _view("", None, usable)
    known = set(open_view.models)
    for spec in table.policy.tiers.values():
        known |= set(spec.model_downgrades)
    return Snapshot(
        table=table,
        version=table.version or "",
        channels=compiled,
        tiers=tiers,
        open_view=open_view,
        known_models=frozenset(known),
        unusable=unusable,
    )
