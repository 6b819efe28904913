"""Hooks.active: which hooks apply to a snapshot (pure: conditions are plain functions of the snapshot)."""

from __future__ import annotations

from newapi_gateway.hooks import Hooks, RequestContext
from newapi_gateway.snapshot import CompiledChannel, Snapshot, compile_snapshot

from .gateway_fixtures import channel, table


async def always(ctx: RequestContext) -> None:
    pass


async def sometimes(ctx: RequestContext) -> None:
    pass


def no_filter(ctx: RequestContext, ch: CompiledChannel) -> None:
    return None


def snapshot(audit: bool) -> Snapshot:
    return compile_snapshot(table([channel("local", ["m"])], {"audit": {"enabled": audit}}), {})


def test_hooks_without_a_condition_always_apply_and_conditions_are_asked_per_snapshot() -> None:
    hooks = Hooks(admission=[always, sometimes], channel_filters=[no_filter], finish=[sometimes])
    assert hooks.active(snapshot(False)) is hooks  # no conditions: nothing to work out
    hooks.when(sometimes, lambda snap: snap.table.policy.audit.enabled)
    off = hooks.active(snapshot(False))
    assert (off.admission, off.channel_filters, off.finish) == ([always], [no_filter], [])
    on = hooks.active(snapshot(True))
    assert (on.admission, on.finish) == ([always, sometimes], [sometimes])


def test_a_condition_that_fails_keeps_its_hook() -> None:
    hooks = Hooks(admission=[sometimes])

    def broken(snap: Snapshot) -> bool:
        raise RuntimeError("policy not compiled")

    hooks.when(sometimes, broken)
    assert hooks.active(snapshot(False)).admission == [sometimes]  # the hook reports the problem per request


def test_a_copy_keeps_the_conditions_in_new_lists() -> None:
    hooks = Hooks(admission=[sometimes])
    hooks.when(sometimes, lambda snap: False)
    copy = hooks.copy()
    copy.admission.append(always)
    assert hooks.admission == [sometimes]
    assert copy.active(snapshot(True)).admission == [always]
