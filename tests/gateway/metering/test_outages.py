"""Outages of PostgreSQL and Redis: paid requests fail closed with an OpenAI-shaped 503, /readyz
says degraded (and stays 200: the gateway keeps answering clearly), the admin API answers 503,
and service comes back by itself when the server returns on the same port — no restart."""

from __future__ import annotations

from pathlib import Path

import httpx

from newapi_gateway.demo_upstream import DemoUpstreamProcess
from tests.services import PostgresFactory, RedisFactory

from .metered import PAID_MODEL, Admin, metered_gateway, poll, postgres_backend

BODY = {"model": PAID_MODEL, "messages": [{"role": "user", "content": "outage"}], "max_tokens": 5}


def test_store_outages_fail_closed_and_recover(
    tmp_path: Path, demo_upstream: DemoUpstreamProcess, postgres_factory: PostgresFactory,
    redis_factory: RedisFactory,
) -> None:
    pg = postgres_factory.new()
    redis = redis_factory.new()
    pg.execute("CREATE DATABASE outage")
    backend = postgres_backend(pg.dsn("outage"), redis.url(0))
    with metered_gateway(tmp_path, demo_upstream.url, backend) as gw:
        admin = Admin(gw.admin_url)
        key, _ = admin.signup("outage", credit=1_000_000, rateLimit={"rpm": 1000})
        headers = {"Authorization": f"Bearer {key}"}

        def chat() -> httpx.Response:
            return httpx.post(gw.base_url + "/chat/completions", json=BODY, headers=headers, timeout=30)

        assert chat().status_code == 200
        assert gw.readyz()["status"] == "ready"

        # PostgreSQL down: 503 store_unavailable (never 401), readiness degraded, admin 503
        pg.stop()
        refused = poll(lambda: (r := chat()).status_code == 503 and r, what="503 with PostgreSQL down")
        error = refused.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "store_unavailable")
        assert refused.headers["Retry-After"] == "1"
        assert chat().status_code == 503  # also once the key fell out of the cache: 503, not 401
        ready = poll(lambda: (d := gw.readyz())["status"] == "degraded" and d, what="readyz degraded")
        assert ready["state"]["components"]["postgresql"].startswith("unavailable")
        assert admin.call("GET", "/customers/outage/balance").status_code == 503
        pg.start()
        poll(lambda: chat().status_code == 200, timeout=30, what="service back after PostgreSQL returned")
        poll(lambda: gw.readyz()["status"] == "ready", what="readyz ready again")

        # Redis down: the limiter cannot count, so requests of keys with limits fail closed
        redis.stop()
        refused = poll(lambda: (r := chat()).status_code == 503 and r, what="503 with Redis down")
        assert refused.json()["error"]["code"] == "store_unavailable"
        ready = poll(lambda: (d := gw.readyz())["status"] == "degraded" and d, what="readyz degraded (redis)")
        assert ready["state"]["components"]["redis-limits"] == "unavailable"
        redis.start()
        poll(lambda: chat().status_code == 200, timeout=30, what="service back after Redis returned")
        poll(lambda: gw.readyz()["status"] == "ready", timeout=30, what="readyz ready again (redis)")
        assert admin.balance("outage")["held"] == 0
        admin.close()
    assert gw.proc is None
