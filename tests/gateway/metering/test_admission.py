"""LimitsAdmission on its own (in-process limiter): which limits a request gets, and when they change."""

from __future__ import annotations

import pytest

from newapi_gateway.errors import GatewayError
from newapi_gateway.hooks import RequestContext
from newapi_gateway.limits.local import LocalLimiter
from newapi_gateway.metering.admission import LimitsAdmission
from newapi_gateway.metering.resolver import key_info
from newapi_gateway.snapshot import Snapshot
from newapi_gateway.store.models import KeyRecord, KeySettings

from ..compliance.builders import channel, make_snapshot, make_table


def _snapshot(daily_quota: int | None) -> Snapshot:
    return make_snapshot(make_table([channel("c1", models=["m"])],
                                    {"tiers": {"pro": {"dailyRequestQuota": daily_quota}}}))


def _ctx(record: KeyRecord, snapshot: Snapshot) -> RequestContext:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    return RequestContext("req_1", "chat", "openai", key_info(record), snapshot, 0.0, model="m", body=body)


def _record(rpm: int | None, key_id: int = 7) -> KeyRecord:
    return KeyRecord(key_id, 1, "cust", "sk-abc", "active", 0, KeySettings(tier="pro", rpm=rpm))


async def test_limits_follow_the_key_record_and_the_routing_table() -> None:
    admission = LimitsAdmission(LocalLimiter(), overlap=False)
    quota_2 = _snapshot(2)
    ctx = _ctx(_record(rpm=100), quota_2)
    spec, key_id = admission.limits_of(ctx)
    assert (spec.rpm, spec.daily_quota, key_id) == (100, 2, 7)
    assert admission.limits_of(ctx)[0] is spec  # worked out once per key and table

    # a new record (the admin API changed the key) is a new KeyInfo: its limits apply at once
    assert admission.limits_of(_ctx(_record(rpm=5), quota_2))[0].rpm == 5
    # a new routing table with another tier quota applies at once too
    assert admission.limits_of(_ctx(_record(rpm=100), _snapshot(9)))[0].daily_quota == 9


async def test_the_check_is_awaited_by_the_caller_and_refuses_past_the_quota() -> None:
    admission = LimitsAdmission(LocalLimiter(), overlap=False)
    snapshot, record = _snapshot(2), _record(rpm=100)
    for _ in range(2):
        ctx = _ctx(record, snapshot)
        await admission(ctx)
        assert ctx.response_headers is not None
        assert ctx.response_headers["x-ratelimit-limit-requests"] == "100"
    with pytest.raises(GatewayError) as refused:
        await admission(_ctx(record, snapshot))
    assert refused.value.status == 429
    assert "Retry-After" in (refused.value.headers or {})


async def test_a_key_without_limits_has_nothing_to_wait_for() -> None:
    snapshot = make_snapshot(make_table([channel("c1", models=["m"])], {"tiers": {"pro": {}}}))
    ctx = _ctx(_record(rpm=None), snapshot)
    pending = LimitsAdmission(LocalLimiter(), overlap=False)(ctx)
    await pending
    assert ctx.response_headers is None


async def test_overlap_mode_leaves_the_check_running_for_the_meter() -> None:
    admission = LimitsAdmission(LocalLimiter(), overlap=True)
    ctx = _ctx(_record(rpm=100), _snapshot(5))
    await admission(ctx)  # returns at once: the check runs beside the credit hold
    await LimitsAdmission.finish(ctx)
    assert ctx.response_headers is not None
