"""Fixtures for the store's shared suite: every test using ``store`` runs against SQLite AND
PostgreSQL (+ Redis), each on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from newapi_gateway.store.base import Store
from newapi_gateway.store.keys import generate_key
from newapi_gateway.store.models import Customer, KeyRecord, KeySettings
from newapi_gateway.store.postgres import PostgresStore
from newapi_gateway.store.sqlite import SqliteStore


class FakeClock:
    """A settable UTC clock for stores (``store.clock``)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Backend:
    """Builds stores on one fresh database; several stores = several gateway replicas."""

    name: str
    sqlite_path: Path | None = None
    dsn: str | None = None
    redis_url: str | None = None
    opened: list[Store] = field(default_factory=list)

    def new(self, **kwargs: Any) -> Store:
        store: Store
        if self.name == "sqlite":
            assert self.sqlite_path is not None
            store = SqliteStore(self.sqlite_path, synchronous="NORMAL", **kwargs)
        else:
            assert self.dsn is not None
            store = PostgresStore(self.dsn, redis_url=self.redis_url, **kwargs)
        self.opened.append(store)
        return store

    async def open(self, **kwargs: Any) -> Store:
        store = self.new(**kwargs)
        await store.open()
        return store


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        b = Backend("sqlite", sqlite_path=tmp_path / "newapi.db")
    else:
        b = Backend(
            "postgres", dsn=request.getfixturevalue("pg_dsn"), redis_url=request.getfixturevalue("redis_url")
        )
    yield b
    for store in b.opened:
        await store.close()


@pytest.fixture
async def store(backend: Backend) -> Store:
    """An open store on a fresh database (SQLite or PostgreSQL + Redis)."""
    return await backend.open()


@dataclass
class Account:
    customer: Customer
    key: KeyRecord
    secret: str


AccountFactory = Callable[..., Any]


@pytest.fixture
def make_account(store: Store) -> AccountFactory:
    """``await make_account(credit=..., **settings)`` -> Account with one active key."""
    counter = iter(range(1, 10_000))

    async def make(credit: int = 0, external_id: str | None = None, **settings: Any) -> Account:
        n = next(counter)
        customer = await store.upsert_customer(external_id or f"customer-{n}", f"Customer {n}")
        new = generate_key()
        key = await store.issue_key(customer.id, new.hash, new.prefix, KeySettings(tier=settings.pop("tier", "pro"),
                                                                                   **settings))
        if credit:
            await store.top_up(customer.id, credit, f"grant-{n}", "initial grant")
        return Account(customer, key, new.secret)

    return make
