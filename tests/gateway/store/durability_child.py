"""Child process for test_durability: settles requests as fast as it can and prints one line per
acknowledged debit (after ``settle`` returned) until the parent SIGKILLs it.

Usage: python durability_child.py (sqlite PATH | postgres DSN) KEY_ID
"""

from __future__ import annotations

import asyncio
import sys

from newapi_gateway.store.base import Store
from newapi_gateway.store.models import Usage


async def main(kind: str, target: str, key_id: int) -> None:
    store: Store
    if kind == "sqlite":
        from newapi_gateway.store.sqlite import SqliteStore

        store = SqliteStore(target)  # default synchronous=FULL
    else:
        from newapi_gateway.store.postgres import PostgresStore

        store = PostgresStore(target)
    await store.open()
    key = await store.get_key(key_id)
    assert key is not None
    out = sys.stdout
    out.write("READY\n")
    out.flush()
    usage = Usage("m", "c", 10, 20)

    async def one(n: int) -> None:
        hold = await store.authorize(key, 100, f"req-{n}", ttl=5)
        result = await store.settle(hold, 7, usage)
        out.write(f"ACK {hold.request_id} {result.ledger_id}\n")
        out.flush()

    n = 0
    while True:
        await asyncio.gather(*[one(n + i) for i in range(16)])
        n += 16


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
