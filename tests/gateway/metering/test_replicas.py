"""Two gateway processes sharing PostgreSQL and Redis: a revocation or suspension made through one
replica's admin API takes effect on the other within 2 s; rate limits are shared (no local-only
counting)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from newapi_gateway.demo_upstream import DemoUpstreamProcess

from .metered import PAID_MODEL, Admin, FreshBackend, MeteredGateway, metered_gateway

BODY = {"model": PAID_MODEL, "messages": [{"role": "user", "content": "replica"}], "max_tokens": 5}


def status(gw: MeteredGateway, key: str) -> int:
    return httpx.post(gw.base_url + "/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"},
                      timeout=30).status_code


def until_status(gw: MeteredGateway, key: str, want: int, limit: float) -> float:
    """Seconds until ``gw`` answers ``want`` for ``key`` (fails after ``limit``)."""
    started = time.monotonic()
    while True:
        got = status(gw, key)
        elapsed = time.monotonic() - started
        if got == want:
            return elapsed
        assert elapsed < limit, f"still {got} after {elapsed:.2f}s (want {want} within {limit}s)"
        time.sleep(0.02)


def test_revocation_reaches_the_other_replica_within_2s(
    tmp_path: Path, demo_upstream: DemoUpstreamProcess, fresh_backend: FreshBackend
) -> None:
    backend = fresh_backend("postgres")
    with ExitStack() as stack:
        a = stack.enter_context(metered_gateway(tmp_path / "a", demo_upstream.url, backend))
        b = stack.enter_context(metered_gateway(tmp_path / "b", demo_upstream.url, backend))
        admin = Admin(a.admin_url)
        key, record = admin.signup("replicated", credit=1_000_000)
        assert status(a, key) == 200
        assert status(b, key) == 200  # b has the key in its cache now

        admin.ok("POST", f"/keys/{record['keyId']}/suspend")
        assert until_status(b, key, 401, 2.0) < 2.0
        admin.ok("POST", f"/keys/{record['keyId']}/resume")
        assert until_status(b, key, 200, 2.0) < 2.0
        admin.ok("POST", f"/keys/{record['keyId']}/revoke")
        assert until_status(b, key, 401, 2.0) < 2.0
        assert status(a, key) == 401
        admin.close()


def test_rate_limits_are_shared_between_replicas(
    tmp_path: Path, demo_upstream: DemoUpstreamProcess, fresh_backend: FreshBackend
) -> None:
    backend = fresh_backend("postgres")
    with ExitStack() as stack:
        a = stack.enter_context(metered_gateway(tmp_path / "a", demo_upstream.url, backend))
        b = stack.enter_context(metered_gateway(tmp_path / "b", demo_upstream.url, backend))
        admin = Admin(b.admin_url)
        key, _ = admin.signup("shared-limits", credit=1_000_000, rateLimit={"rpm": 3})
        assert [status(a, key), status(b, key), status(a, key)] == [200, 200, 200]
        assert status(b, key) == 429
        assert status(a, key) == 429
        admin.close()
