"""Audit writes, retention and the retention probe against real stores (SQLite, PostgreSQL + Redis)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from newapi_gateway.compliance.audit import AuditLog
from newapi_gateway.compliance.audit_retention import cutoff_for, purge_expired, retention_forever
from newapi_gateway.compliance.audit_writer import AuditWriter
from newapi_gateway.compliance.retention_probe import InvalidMarker, check_marker, search
from newapi_gateway.hooks import Hooks
from newapi_gateway.store import AuditEvent, Store, create_store
from newapi_gateway.store.keys import hash_key
from newapi_gateway.store.models import KeySettings
from tests.services import PostgresFactory

from .builders import channel, make_snapshot, make_table

NOW = datetime.now(UTC)
FAR = (NOW - timedelta(days=3650), NOW + timedelta(days=1))


@dataclass
class Backend:
    name: str
    store: Store
    dsn: str | None = None
    sqlite_path: str | None = None
    redis_url: str | None = None


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        path = str(tmp_path / "newapi.db")
        b = Backend("sqlite", create_store(sqlite_path=path), sqlite_path=path)
    else:
        dsn, url = request.getfixturevalue("pg_dsn"), request.getfixturevalue("redis_url")
        b = Backend("postgres", create_store(dsn=dsn, redis_url=url), dsn=dsn, redis_url=url)
    await b.store.open()
    yield b
    await b.store.close()


def event(i: int, ts: datetime, **kw: object) -> AuditEvent:
    return AuditEvent(ts=ts, request_id=f"req-{i}", status=200, **kw)  # type: ignore[arg-type]


async def all_rows(store: Store) -> list[AuditEvent]:
    return [e async for e in store.export_audit(since=FAR[0], until=FAR[1])]


async def test_writer_batches_every_row(backend: Backend) -> None:
    writer = AuditWriter(backend.store, flush_interval=0.05, batch_size=200)
    writer.start()
    for i in range(950):
        writer.add(event(i, NOW, decisions={"geo": "allow"}))
    assert await writer.flush(30)
    await writer.close()
    rows = await all_rows(backend.store)
    assert len(rows) == 950 == writer.written
    assert {r.request_id for r in rows} == {f"req-{i}" for i in range(950)}
    assert rows[0].decisions == {"geo": "allow"}


async def test_a_single_row_is_written_after_the_flush_interval(backend: Backend) -> None:
    writer = AuditWriter(backend.store, flush_interval=0.1, batch_size=500)
    writer.start()
    try:
        writer.add(event(1, NOW))
        for _ in range(100):
            if writer.written:
                break
            await asyncio.sleep(0.05)
        assert [r.request_id for r in await all_rows(backend.store)] == ["req-1"]
    finally:
        await writer.close()


async def test_writer_keeps_rows_while_postgres_is_down(postgres_factory: PostgresFactory) -> None:
    server = postgres_factory.new()
    server.execute("CREATE DATABASE audit_outage")
    store = create_store(dsn=server.dsn("audit_outage"))
    await store.open()
    writer = AuditWriter(store, flush_interval=0.05, batch_size=50)
    writer.start()
    try:
        await asyncio.to_thread(server.stop, "immediate")
        for i in range(120):
            writer.add(event(i, NOW))
        await asyncio.sleep(1.0)
        assert writer.written == 0, "nothing can be written while the database is down"
        assert writer.queued == 120
        await asyncio.to_thread(server.start)
        assert await writer.flush(60)
        assert writer.written == 120
        assert writer.dropped == 0
        assert len(await all_rows(store)) == 120
    finally:
        await writer.close(5)
        await store.close()


async def test_queue_is_bounded() -> None:
    store = create_store(sqlite_path=":memory:")  # never opened: the writer is not started
    writer = AuditWriter(store, max_queued=10)
    for i in range(25):
        writer.add(event(i, NOW))
    assert writer.queued == 10
    assert writer.dropped == 15


async def test_retention_deletes_old_rows_in_bounded_batches(backend: Backend) -> None:
    old = NOW - timedelta(days=40)
    await backend.store.add_audit_events([event(i, old - timedelta(seconds=i)) for i in range(2500)])
    await backend.store.add_audit_events([event(10_000 + i, NOW - timedelta(days=29)) for i in range(10)])
    first = await purge_expired(backend.store, 30, now=NOW, batch_size=1000, max_batches=2, pause=0)
    assert (first.deleted, first.more) == (2000, True)
    second = await purge_expired(backend.store, 30, now=NOW, batch_size=1000, max_batches=2, pause=0)
    assert (second.deleted, second.more) == (500, False)
    assert second.cutoff == cutoff_for(30, NOW)
    kept = await all_rows(backend.store)
    assert len(kept) == 10
    assert all(r.request_id.startswith("req-100") for r in kept)


async def test_retention_job_follows_the_table_in_force(backend: Backend) -> None:
    await backend.store.add_audit_events([event(i, NOW - timedelta(days=5)) for i in range(30)])
    days: list[int | None] = [None]
    job = asyncio.create_task(retention_forever(backend.store, lambda: days[0], interval=0.05, first_delay=0,
                                                batch_size=7))
    try:
        await asyncio.sleep(0.3)
        assert len(await all_rows(backend.store)) == 30, "no table loaded: nothing is deleted"
        days[0] = 10
        await asyncio.sleep(0.3)
        assert len(await all_rows(backend.store)) == 30, "rows within retention are kept"
        days[0] = 3
        for _ in range(100):
            if not await all_rows(backend.store):
                break
            await asyncio.sleep(0.05)
        assert await all_rows(backend.store) == []
    finally:
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job


def test_marker_form_is_enforced() -> None:
    assert check_marker("sk-probe-" + "a" * 16)
    for bad in ("sk-live-" + "a" * 20, "sk-probe-short", "sk-probe-" + "a" * 20 + "!", None, 42):
        with pytest.raises(InvalidMarker, match="sk-probe-"):
            check_marker(bad)


async def probe(backend: Backend, marker: str, since: datetime | None = None) -> dict[str, object]:
    report = await search(marker, dsn=backend.dsn, sqlite_path=backend.sqlite_path, redis_url=backend.redis_url,
                          since=since)
    return report.to_json()


async def test_probe_finds_a_retained_marker_in_any_form(backend: Backend) -> None:
    marker = "sk-probe-" + secrets.token_urlsafe(18)
    clean = await probe(backend, marker)
    assert clean["found"] is False
    assert clean["scanned"]["database"]["tables"] >= 8  # type: ignore[index]
    await backend.store.add_audit_events([event(1, NOW, prompt=f"my key is {marker}")])
    found = await probe(backend, marker)
    assert found["found"] is True
    assert {"store": "database", "where": "audit_events", "form": "raw", "count": 1} in found["hits"]  # type: ignore[operator]
    # ``since`` limits the append-only tables to recent rows
    assert (await probe(backend, marker, since=NOW + timedelta(minutes=1)))["found"] is False

    other = "sk-probe-" + secrets.token_urlsafe(18)
    customer = await backend.store.upsert_customer("probe-cust", None)
    await backend.store.issue_key(customer.id, hash_key(other), other[:11], KeySettings(tier="pro"))
    hashed = await probe(backend, other)
    forms = {(h["where"], h["form"]) for h in hashed["hits"]}  # type: ignore[attr-defined]
    assert ("keys", "sha256-hex" if backend.name == "postgres" else "sha256") in forms


async def test_probe_searches_redis_keys_and_values(redis_url: str, tmp_path: Path) -> None:
    path = str(tmp_path / "empty.db")
    store = create_store(sqlite_path=path)
    await store.open()
    await store.close()
    marker = "sk-probe-" + secrets.token_urlsafe(18)
    client = aioredis.from_url(redis_url)
    try:
        await client.set("limits:other", "nothing here")
        await client.hset("cache:h", mapping={"f": "v"})
        report = await search(marker, sqlite_path=path, redis_url=redis_url)
        assert not report.found
        assert report.scanned["redis"] == {"keys": 2}
        await client.rpush("leak:list", f"Bearer {marker}")
        await client.set(f"seen:{marker}", "1")
        await client.zadd("leak:z", {hash_key(marker).hex(): 1.0})
        report = await search(marker, sqlite_path=path, redis_url=redis_url)
        where = {(h.where, h.form) for h in report.hits}
        assert ("value:leak:list", "raw") in where
        assert (f"key:seen:{marker}", "raw") in where
        assert ("value:leak:z", "sha256-hex") in where
    finally:
        await client.aclose()


def test_the_audit_hooks_apply_only_while_audit_is_on() -> None:
    log = AuditLog(AuditWriter(create_store(sqlite_path=":memory:")))  # never opened: nothing is written
    hooks = Hooks()
    log.install(hooks)
    local = [channel("local", "vllm", ["m"])]

    def active(audit: dict[str, bool]) -> tuple[list[object], list[object]]:
        on = hooks.active(make_snapshot(make_table(local, {"audit": audit})))
        return list(on.admission), list(on.finish)

    assert active({"enabled": False}) == ([], [])
    assert active({"enabled": True}) == ([], [log.observe])  # the stream text is kept only for logPromptContent
    assert active({"enabled": True, "logPromptContent": True}) == ([log.admission], [log.observe])
