"""The validating admission webhook's rules: the reconcilers' rules, applied before an object is stored.

Single-object rules (schema, compliance) deny. Cross-object rules deny when the object under
review is the one at fault (a Channel serving a free tier of an instance that would bind it; an
instance turning ``aup.enforcement`` off while commercial channels are bound) and warn otherwise
(the other object is then excluded by the reconciler and its status says why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from newapi_operator.api.compliance import (
    check_binding,
    check_channel,
    validate_channel,
    validate_customer_key,
    validate_instance,
)
from newapi_operator.api.v1alpha1 import ChannelSpec, NewAPIInstanceSpec

from .binding import ChannelInput, evaluate_channel
from .selectors import matches


def needs_review(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a write changes what the rules look at (spec, labels); finalizer, annotation and
    deletion updates by the operator itself (Kopf) must never be refused."""
    if old is None:
        return True
    if (new.get("metadata") or {}).get("deletionTimestamp"):
        return False
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return old.get("spec") != new.get("spec") or old_meta.get("labels") != new_meta.get("labels")


def _instance_spec(body: Mapping[str, Any]) -> NewAPIInstanceSpec | None:
    try:
        return NewAPIInstanceSpec.model_validate(dict(body.get("spec") or {}))
    except ValueError:
        return None


def _name(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("name", ""))


def review(
    kind: str,
    obj: Mapping[str, Any],
    *,
    instances: Sequence[Mapping[str, Any]] = (),
    channels: Sequence[Mapping[str, Any]] = (),
) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` for an object about to be stored; ``instances``/``channels``: its namespace's."""
    obj = dict(obj)
    if kind == "Channel":
        return _review_channel(obj, instances)
    if kind == "NewAPIInstance":
        return _review_instance(obj, channels)
    if kind == "CustomerKey":
        return _review_key(obj, instances)
    return [f"kind: {kind!r} is not served by this webhook"], []


def _review_channel(obj: dict[str, Any], instances: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    errors = [str(v) for v in validate_channel(obj)]
    if errors:
        return errors, []
    name = _name(obj)
    spec = ChannelSpec.model_validate(obj.get("spec") or {})
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for inst in instances:
        ispec = _instance_spec(inst)
        if ispec is None or not matches(ispec.channel_selector, labels):
            continue
        for v in check_binding(ispec, [(name, spec)]):
            if v.field.startswith("Channel/") or v.rule == "aup-off-with-commercial":
                errors.append(f"NewAPIInstance {_name(inst)} would bind this channel: {v}")
    return errors, []


def _review_instance(obj: dict[str, Any], channels: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    errors = [str(v) for v in validate_instance(obj)]
    if errors:
        return errors, []
    spec = _instance_spec(obj)
    assert spec is not None
    bound: list[tuple[str, ChannelSpec]] = []
    for body in channels:
        ch = ChannelInput.from_body(body)
        if ch.deleting or not matches(spec.channel_selector, ch.labels):
            continue
        verdict = evaluate_channel(ch, {})
        if verdict.spec is not None and not check_channel(verdict.spec):
            bound.append((ch.name, verdict.spec))
    warnings: list[str] = []
    for v in check_binding(spec, bound):
        if v.field.startswith("Channel/"):
            warnings.append(f"{v} (that channel will be excluded)")
        else:
            errors.append(str(v))
    return errors, warnings


def _review_key(obj: dict[str, Any], instances: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    ref = ((obj.get("spec") or {}).get("instanceRef") or {}).get("name")
    instance = next((i for i in instances if _name(i) == ref), None)
    ispec = _instance_spec(instance) if instance is not None else None
    errors = [str(v) for v in validate_customer_key(obj, ispec)]
    warnings = [] if instance is not None or not ref else [
        f"spec.instanceRef: NewAPIInstance {ref!r} does not exist (yet) in this namespace; the key stays "
        "not Ready until it does"]
    return errors, warnings
