"""An acknowledged debit survives a gateway SIGKILL; the crashed gateway's holds expire by rule."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from newapi_gateway.store.base import Store
from newapi_gateway.store.models import LedgerKind
from tests.gateway.store.conftest import AccountFactory, Backend

CHILD = Path(__file__).with_name("durability_child.py")


async def _run_and_kill(argv: list[str], acks_wanted: int) -> dict[str, int]:
    """Start the child, collect its acknowledgements, SIGKILL it mid-flight."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    acked: dict[str, int] = {}
    try:
        async with asyncio.timeout(60):
            ready = await proc.stdout.readline()
            assert ready.strip() == b"READY", (ready, await proc.stderr.read() if proc.stderr else b"")
            while len(acked) < acks_wanted:
                line = await proc.stdout.readline()
                if not line:
                    break
                _, request_id, ledger_id = line.split()
                acked[request_id.decode()] = int(ledger_id)
        proc.kill()  # SIGKILL while more requests are held and being settled
        await proc.wait()
        for line in (await proc.stdout.read()).splitlines():  # acks written before the kill count too
            if line.startswith(b"ACK "):
                _, request_id, ledger_id = line.split()
                acked[request_id.decode()] = int(ledger_id)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert len(acked) >= acks_wanted, await proc.stderr.read() if proc.stderr else b""
    return acked


async def test_acknowledged_debits_survive_sigkill(
    backend: Backend, make_account: AccountFactory, store: Store
) -> None:
    acct = await make_account(credit=10_000_000)
    target = str(backend.sqlite_path) if backend.name == "sqlite" else str(backend.dsn)
    acked = await _run_and_kill([sys.executable, str(CHILD), backend.name, target, str(acct.key.id)], 150)

    # A fresh gateway (this test's store) sees every acknowledged debit, exactly once.
    debits: dict[str, int] = {}
    cursor = None
    while True:
        page = await store.list_ledger(acct.customer.id, cursor=cursor, limit=1000)
        for e in page.entries:
            if e.kind == LedgerKind.DEBIT:
                assert e.idempotency_key not in debits
                debits[e.idempotency_key] = e.id
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    missing = set(acked) - set(debits)
    assert not missing, f"acknowledged debits lost after SIGKILL: {sorted(missing)[:5]}"
    assert all(debits[r] == lid for r, lid in acked.items())

    # The killed gateway's open holds expire and are released with zero charge.
    before = await store.balance(acct.customer.id)
    assert before.balance == 10_000_000 - 7 * len(debits)
    await store.expire_holds(datetime.now(UTC) + timedelta(seconds=10))
    after = await store.balance(acct.customer.id)
    assert (after.balance, after.held) == (before.balance, 0)
