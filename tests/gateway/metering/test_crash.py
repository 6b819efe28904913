"""A gateway SIGKILLed with requests in flight, on both back ends: after a restart on the same
state, every debit acknowledged before the kill is still there, the killed requests' holds
expire and are released by rule (zero charge), and the balance equals the ledger."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess

from .metered import BACKENDS, PAID_MODEL, Admin, FreshBackend, metered_gateway, poll

HOLD_TTL = "2"


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_sigkill_loses_no_acknowledged_debit(
    backend_name: str, tmp_path: Path, demo_upstream: DemoUpstreamProcess, fresh_backend: FreshBackend
) -> None:
    backend = fresh_backend(backend_name)
    with metered_gateway(tmp_path, demo_upstream.url, backend, "--hold-ttl", HOLD_TTL) as gw:
        admin = Admin(gw.admin_url)
        key, _ = admin.signup("crash", credit=1_000_000)
        headers = {"Authorization": f"Bearer {key}"}
        body = {"model": PAID_MODEL, "messages": [{"role": "user", "content": "acknowledged please"}],
                "max_tokens": 20}
        url = gw.base_url + "/chat/completions"
        for _ in range(5):
            assert httpx.post(url, json=body, headers=headers, timeout=30).status_code == 200
        # a burst: the key becomes busy and its holds come from a credit lease, live at the kill
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: httpx.post(url, json=body, headers=headers, timeout=30).status_code,
                                  range(60)))
        assert codes == [200] * 60
        acknowledged = poll(lambda: (d := admin.debits("crash")) and len(d) == 65 and d, what="65 debits committed")

        # Streams that are mid-flight when the gateway dies: their holds are open.
        slow = {"model": PAID_MODEL, "max_tokens": 200, "stream": True,
                "messages": [{"role": "user", "content": "[[demo:tokens=200;chunk_delay_ms=50]] x"}]}
        started = threading.Barrier(4)

        def stream() -> None:
            try:
                with httpx.stream("POST", url, json=slow, headers=headers, timeout=30) as rsp:
                    started.wait(timeout=30)
                    for _ in rsp.iter_bytes():
                        pass
            except (httpx.HTTPError, threading.BrokenBarrierError):
                pass

        threads = [threading.Thread(target=stream) for _ in range(3)]
        for t in threads:
            t.start()
        started.wait(timeout=30)
        held = admin.balance("crash")["held"]
        assert held > 0, "the streams in flight hold credit"
        admin.close()
        gw.kill()
        for t in threads:
            t.join(timeout=30)

        gw.start()  # same ports, same database: migrations are a no-op, expired holds are released
        admin = Admin(gw.admin_url)
        balance = poll(lambda: (b := admin.balance("crash")) and b["held"] == 0 and b, timeout=30,
                       what="holds of the killed gateway released")
        after = admin.debits("crash")
        ids = {d["idempotencyKey"] for d in after}
        assert {d["idempotencyKey"] for d in acknowledged} <= ids, "an acknowledged debit was lost"
        assert len(after) == 65, "a killed request was charged (the rule: expired holds release with zero charge)"
        assert balance["balance"] == 1_000_000 + sum(d["amount"] for d in after)
        # the restarted gateway serves the customer again
        assert httpx.post(url, json=body, headers=headers, timeout=30).status_code == 200
        admin.close()
