"""Fixtures for the admin API tests: a metered gateway process per state back end (module scope)
and its admin client. See tests/gateway/metering/metered.py."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess
from tests.gateway.metering.metered import (
    BACKENDS,
    Admin,
    MeteredGateway,
    backend,
    metered_gateway,
)
from tests.services import PostgresServer, RedisServer

_names = itertools.count(1)


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    _shared_demo_upstream: DemoUpstreamProcess,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
) -> Iterator[MeteredGateway]:
    tmp = tmp_path_factory.mktemp(f"admin-{request.param}")
    state = backend(request.param, tmp / "state", postgres_server, redis_server)
    with metered_gateway(tmp, _shared_demo_upstream.url, state) as gw:
        yield gw


@pytest.fixture
def admin(gateway: MeteredGateway) -> Iterator[Admin]:
    client = Admin(gateway.admin_url)
    yield client
    client.close()


@pytest.fixture
def customer(request: pytest.FixtureRequest, gateway: MeteredGateway, admin: Admin) -> str:
    """A new customer (created through the API) unique to this test and back end."""
    ext = f"{request.node.originalname}-{gateway.backend.name}-{next(_names)}"
    admin.ok("PUT", f"/customers/{ext}", {"displayName": "Test Customer"})
    return ext
