"""A compliance test stack: a metered gateway PROCESS (store + admin API) with the compliance plane,
the demo upstream as its commercial, in-cluster and BYOK upstream, and helpers to talk to it.

The routing table (:func:`routes_doc`) has:

* ``commercial`` (openai-compatible, attested commercial contract, provider "Demo AI", priced) serving
  ``m-commercial`` and ``m-shared`` (priority 10), with the operator credential ``op``;
* ``local`` (vllm, in-cluster) serving ``m-local`` and ``m-shared`` (priority 0);
* ``byok`` (byok-passthrough, OpenAI provider) serving ``m-byok``;

and a policy whose geo source trusts ``127.0.0.1`` (the test client) to set ``CF-IPCountry``.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from newapi_gateway.routing_table import parse_table
from tests.gateway.gateway_fixtures import channel, write_json
from tests.gateway.metering.metered import PRICING, TIERS, Admin, MeteredGateway, StateBackend

OPERATOR_KEY = "sk-operator-credential-7d1f"
OPERATOR_NAME = "Test Sovereign Operator"
COMMERCIAL, LOCAL, SHARED, BYOK = "m-commercial", "m-local", "m-shared", "m-byok"
TRUSTED = ["127.0.0.1/32"]


def routes_doc(upstream_url: str, policy: dict[str, Any] | None = None,
               channels: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The stack's routing table; ``policy`` is deep-merged into the default policy."""
    base_policy: dict[str, Any] = {
        "tiers": copy.deepcopy(TIERS),
        "geo": {"trustedProxyCIDRs": TRUSTED},
        "reseller": {"operatorName": OPERATOR_NAME},
    }
    _merge(base_policy, policy or {})
    chans = channels if channels is not None else [
        channel("commercial", [COMMERCIAL, SHARED], type="openai-compatible", endpoint=upstream_url + "/v1",
                credential="op", priority=10, pricing=PRICING,
                attestation={"kind": "commercial-contract", "provider": "Demo AI", "contractRef": "contract-42"}),
        channel("local", [LOCAL, SHARED], endpoint=upstream_url + "/v1", pricing=PRICING),
        channel("byok", [BYOK], type="byok-passthrough", allowedProviders=["openai"],
                providerEndpoints={"openai": upstream_url + "/v1"}),
    ]
    return {"schemaVersion": 1, "instance": "compliance", "channels": chans, "policy": base_policy}


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


@dataclass
class Stack:
    """One running gateway with its admin client and upstream."""

    gateway: MeteredGateway
    admin: Admin
    upstream_url: str
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def routes(self) -> Path:
        return self.gateway.routes

    def client(self, key: str, country: str | None = "DE", **headers: str) -> httpx.Client:
        """An HTTP client of the customer API with ``key`` (and a trusted country header)."""
        h = {"Authorization": f"Bearer {key}", **headers}
        if country is not None:
            h["CF-IPCountry"] = country
        c = httpx.Client(base_url=self.url, headers=h, timeout=30)
        self.clients.append(c)
        return c

    def chat(self, key: str, model: str, text: str = "hello", country: str | None = "DE", stream: bool = False,
             **headers: str) -> httpx.Response:
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
        if stream:
            body["stream"] = True
        return self.client(key, country, **headers).post("/v1/chat/completions", json=body)

    def version(self) -> str:
        return str(self.gateway.readyz()["routingTableVersion"])

    def write_routes(self, doc: dict[str, Any], expect_change: bool = True, timeout: float = 20.0) -> None:
        """Replace the routing table file; wait until the gateway serves it (or, with ``expect_change``
        false, until it has read and refused it)."""
        rejected = self.gateway.logs().count("rejected invalid configuration")
        want = parse_table(doc).version if expect_change else None
        write_json(self.routes, doc)
        deadline = time.monotonic() + timeout
        while True:
            if expect_change and self.version() == want:
                return
            if not expect_change and self.gateway.logs().count("rejected invalid configuration") > rejected:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not {'load' if expect_change else 'refuse'} the new table")
            time.sleep(0.05)

    def audit(self, external_id: str | None = None, minutes: int = 60) -> list[dict[str, Any]]:
        """Every audit row of the last ``minutes`` (of one customer), via the admin API."""
        now = time.time()
        params: dict[str, Any] = {"since": _iso(now - minutes * 60), "until": _iso(now + 600), "limit": 10000}
        if external_id:
            params["externalId"] = external_id
        rows: list[dict[str, Any]] = self.admin.ok("GET", "/audit", **params)["data"]
        return rows

    def audit_row(self, request_id: str, timeout: float = 20.0) -> dict[str, Any]:
        """The audit row of one request (waits for the batched write)."""
        deadline = time.monotonic() + timeout
        while True:
            for row in self.audit():
                if row["requestId"] == request_id:
                    return row
            if time.monotonic() > deadline:
                raise AssertionError(f"no audit row for {request_id} within {timeout}s")
            time.sleep(0.1)

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.admin.close()


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@contextmanager
def running_stack(tmp: Path, upstream_url: str, backend: StateBackend, *extra_args: str,
                  routes: dict[str, Any] | None = None, log_level: str = "info",
                  env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Start a gateway process for the stack (stopped at exit)."""
    tmp.mkdir(parents=True, exist_ok=True)
    routes_path = tmp / "routes.json"
    write_json(routes_path, routes if routes is not None else routes_doc(upstream_url))
    write_json(tmp / "creds.json", {"op": OPERATOR_KEY})
    args = ["--upstream-credentials", str(tmp / "creds.json"), *extra_args]
    gw = MeteredGateway(tmp, routes_path, backend, args, env or {})
    if log_level != "info":
        gw.extra_args = [*gw.extra_args, "--log-level", log_level]
    try:
        gw.start()
        stack = Stack(gw, Admin(gw.admin_url), upstream_url)
        try:
            yield stack
        finally:
            stack.close()
    except BaseException:
        sys.stderr.write(f"--- gateway log ({gw.log_path}) ---\n{gw.logs()[-6000:]}\n")
        raise
    finally:
        gw.stop()



def signup(admin: Admin, external_id: str, credit: int = 10_000_000, tier: str = "pro") -> str:
    """A customer with credit and one key; returns the key."""
    key, _ = admin.signup(external_id, tier=tier, credit=credit)
    return key
