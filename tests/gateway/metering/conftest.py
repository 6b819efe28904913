"""Fixtures for the metering tests: a metered gateway process per state back end.

``gateway`` (module scope, parametrized ``sqlite`` / ``postgres``): one gateway process per back
end and test module, on a fresh SQLite file or a fresh PostgreSQL database + Redis logical
database; each test signs up its own customers, so tests never see each other's money.
``admin`` is the admin API client of that gateway. ``fresh_backend`` builds a new back end for
tests that start their own gateways (crash, replicas, migrations).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess
from tests.services import PostgresServer, RedisServer

from .metered import (
    BACKENDS,
    Admin,
    FreshBackend,
    MeteredGateway,
    StateBackend,
    backend,
    metered_gateway,
)

_names = itertools.count(1)


@pytest.fixture
def fresh_backend(tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer) -> FreshBackend:
    def make(name: str) -> StateBackend:
        return backend(name, tmp_path / f"state-{next(_names)}", postgres_server, redis_server)

    return make


@pytest.fixture(scope="module", params=BACKENDS)
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    _shared_demo_upstream: DemoUpstreamProcess,
    postgres_server: PostgresServer,
    redis_server: RedisServer,
) -> Iterator[MeteredGateway]:
    tmp = tmp_path_factory.mktemp(f"metered-{request.param}")
    state = backend(request.param, tmp / "state", postgres_server, redis_server)
    with metered_gateway(tmp, _shared_demo_upstream.url, state) as gw:
        yield gw


@pytest.fixture
def admin(gateway: MeteredGateway) -> Iterator[Admin]:
    client = Admin(gateway.admin_url)
    yield client
    client.close()


@pytest.fixture
def customer(request: pytest.FixtureRequest, gateway: MeteredGateway) -> str:
    """A customer external id unique to this test and back end."""
    return f"{request.node.name}-{gateway.backend.name}-{next(_names)}".replace("[", "-").replace("]", "")
