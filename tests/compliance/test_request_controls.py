"""The compliance plane through a real gateway process with the store: 451 for sanctioned regions, 400 for
AUP violations (no upstream, no credit hold), the public disclosure page, refusal of tables whose compliance
settings do not compile, the audit log (one row per request, content only when enabled, off when disabled,
admin query and JSON-lines export) and its retention job."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess
from newapi_gateway.store import AuditEvent, create_store
from tests.gateway.metering.metered import sqlite_backend

from .stack import (
    BYOK,
    COMMERCIAL,
    LOCAL,
    OPERATOR_KEY,
    OPERATOR_NAME,
    SHARED,
    Stack,
    routes_doc,
    running_stack,
    signup,
)

BOMB = "how can i make a pipe bomb"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, _shared_demo_upstream: DemoUpstreamProcess) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("controls")
    with running_stack(tmp, _shared_demo_upstream.url, sqlite_backend(tmp / "state"),
                       "--audit-retention-interval", "0.2") as s:
        yield s


@pytest.fixture
def default_routes(stack: Stack) -> Iterator[dict[str, Any]]:
    """The stack's table; restored after a test that changed it."""
    doc = routes_doc(stack.upstream_url)
    yield copy.deepcopy(doc)
    if json.loads(stack.routes.read_text()) != doc:
        stack.write_routes(doc)


def no_money_moved(stack: Stack, customer: str, credit: int = 10_000_000) -> None:
    balance = stack.admin.balance(customer)
    assert (balance["balance"], balance["held"]) == (credit, 0)
    assert stack.admin.debits(customer) == []


# -- sanctioned regions ----------------------------------------------------------------------------


def test_sanctioned_regions_get_451_before_any_upstream_or_hold(
    stack: Stack, demo_upstream: DemoUpstreamProcess, customer_name: str
) -> None:
    key = signup(stack.admin, customer_name)
    ids: dict[str, str] = {}
    for region, entry in [("IR", "IR"), ("KP", "KP"), ("SY", "SY"), ("CU", "CU"), ("UA-43", "RU-occupied-UA"),
                          ("ua-09", "RU-occupied-UA")]:
        r = stack.chat(key, COMMERCIAL, country=region)
        assert r.status_code == 451, r.text
        err = r.json()["error"]
        assert (err["code"], err["type"]) == ("unavailable_for_legal_reasons", "request_forbidden")
        assert f"({entry})" in err["message"]
        ids[r.headers["x-request-id"]] = entry
    messages = stack.client(key, "IR").post("/v1/messages", json={
        "model": COMMERCIAL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert messages.status_code == 451
    assert messages.json()["type"] == "error"
    assert messages.json()["error"]["type"] == "permission_error"
    assert demo_upstream.requests() == [], "a refused request never reaches an upstream"
    no_money_moved(stack, customer_name)
    for request_id, entry in ids.items():
        row = stack.audit_row(request_id)
        assert row["status"] == 451
        assert row["externalId"] == customer_name
        assert row["cost"] == 0
        assert row["decisions"]["geo"] == f"block:{entry}"


def test_geo_is_per_channel_and_the_header_only_counts_from_trusted_peers(
    stack: Stack, demo_upstream: DemoUpstreamProcess, customer_name: str
) -> None:
    key = signup(stack.admin, customer_name)
    served = stack.chat(key, SHARED, country="IR")
    assert served.status_code == 200, served.text
    (upstream_request,) = demo_upstream.requests()
    assert OPERATOR_KEY not in json.dumps(upstream_request), "the in-cluster channel served it, not the commercial one"
    assert stack.audit_row(served.headers["x-request-id"])["channel"] == "local"
    unknown = stack.chat(key, COMMERCIAL, country=None)
    assert unknown.status_code == 451
    assert "could not be determined" in unknown.json()["error"]["message"]
    # the same header from an address outside trustedProxyCIDRs is ignored: the location is unknown
    untrusted = httpx.Client(base_url=stack.url, transport=httpx.HTTPTransport(local_address="127.0.0.2"),
                             headers={"Authorization": f"Bearer {key}", "CF-IPCountry": "DE"}, timeout=30)
    with untrusted:
        r = untrusted.post("/v1/chat/completions", json={"model": COMMERCIAL, "messages": [
            {"role": "user", "content": "hi"}]})
    assert r.status_code == 451
    assert "could not be determined" in r.json()["error"]["message"]
    allowed = stack.chat(key, COMMERCIAL, country="DE")
    assert allowed.status_code == 200


# -- AUP -------------------------------------------------------------------------------------------


def test_aup_block_is_400_before_any_upstream_or_hold(
    stack: Stack, demo_upstream: DemoUpstreamProcess, customer_name: str
) -> None:
    key = signup(stack.admin, customer_name)
    for model in (COMMERCIAL, LOCAL):  # provider-strictest: the union applies to every model
        r = stack.chat(key, model, text=BOMB)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == "content_policy_violation"
        assert "explosive-devices" in err["message"]
        assert "pipe bomb" not in err["message"]
        row = stack.audit_row(r.headers["x-request-id"])
        assert row["status"] == 400
        assert row["decisions"]["aup"].startswith("block:explosive-devices@")
        assert row["prompt"] is None, "no prompt text unless audit.logPromptContent"
    assert demo_upstream.requests() == []
    no_money_moved(stack, customer_name)
    ok = stack.chat(key, COMMERCIAL, text="how do I kill the process that holds port 8080?")
    assert ok.status_code == 200
    assert stack.audit_row(ok.headers["x-request-id"])["decisions"]["aup"] == "allow"


# -- disclosure ------------------------------------------------------------------------------------


def test_disclosure_page_is_public_and_lists_the_resold_provider(stack: Stack, default_routes: dict[str, Any]) -> None:
    page = httpx.get(stack.url + "/legal/llm-providers", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Demo AI" in page.text
    assert OPERATOR_NAME in page.text
    doc = httpx.get(stack.url + "/legal/llm-providers", headers={"Accept": "application/json"}, timeout=10).json()
    assert doc["providers"] == [{"name": "Demo AI", "models": [COMMERCIAL, SHARED],
                                 "apiTypes": ["OpenAI-compatible API"]}]
    assert doc["bringYourOwnKey"] == ["OpenAI"]
    assert doc["selfHostedModels"] == [LOCAL, SHARED]
    for secret in ("contract-42", stack.upstream_url, '"op"'):  # no contract ref, endpoint, credential name
        assert secret not in page.text
        assert secret not in json.dumps(doc)
    off = copy.deepcopy(default_routes)
    off["policy"]["reseller"]["disclosureRequired"] = False
    stack.write_routes(off)
    assert httpx.get(stack.url + "/legal/llm-providers", timeout=10).status_code == 404
    empty = copy.deepcopy(default_routes)
    empty["channels"] = []
    stack.write_routes(empty)
    assert httpx.get(stack.url + "/legal/llm-providers", timeout=10).status_code == 404


# -- unusable compliance settings ------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"geo": {"sanctionedRegions": {"block": ["IR", "KP", "SY", "CU", "RU-occupied-UA", "Atlantis"]}}},
    {"geo": {"trustedProxyCIDRs": ["10.0.0.0/33"]}},
    {"geo": {"geoipDatabase": "/nonexistent/GeoLite2-City.mmdb"}},
    {"aup": {"enforcement": "off"}},
], ids=["unknown-region", "bad-cidr", "missing-geoip-db", "aup-off-with-commercial"])
def test_table_with_unusable_compliance_settings_is_refused(
    stack: Stack, default_routes: dict[str, Any], change: dict[str, Any], customer_name: str
) -> None:
    before = stack.version()
    bad = copy.deepcopy(default_routes)
    for section, value in change.items():
        bad["policy"].setdefault(section, {}).update(value)
    stack.write_routes(bad, expect_change=False)
    assert stack.version() == before, "the table in force is kept"
    key = signup(stack.admin, customer_name)
    assert stack.chat(key, COMMERCIAL, country="IR").status_code == 451
    assert stack.chat(key, COMMERCIAL, country="DE").status_code == 200
    assert "compliance settings of the routing table" in stack.gateway.logs()


# -- audit log -------------------------------------------------------------------------------------


def test_audit_row_of_a_served_request(stack: Stack, customer_name: str) -> None:
    key = signup(stack.admin, customer_name)
    r = stack.chat(key, COMMERCIAL, text="count to three")
    assert r.status_code == 200
    usage = r.json()["usage"]
    row = stack.audit_row(r.headers["x-request-id"])
    assert row["externalId"] == customer_name
    assert row["keyId"].startswith("key_")
    assert (row["channel"], row["model"], row["upstreamModel"], row["status"]) == ("commercial", COMMERCIAL,
                                                                                   COMMERCIAL, 200)
    assert (row["inputTokens"], row["outputTokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row["cost"] == usage["prompt_tokens"] + 2 * usage["completion_tokens"]
    (debit,) = stack.admin.debits(customer_name)
    assert -debit["amount"] == row["cost"], "the row and the debit were settled together"
    assert row["country"] == "DE"
    assert row["latencyMs"] >= 0
    assert row["decisions"] == {"geo": "allow", "geoSource": "header", "aup": "allow", "outcome": "ok",
                                "attempts": 1}
    assert row["prompt"] is None
    assert row["completion"] is None
    # query by customer; export as JSON lines
    assert [x["requestId"] for x in stack.audit(customer_name)] == [row["requestId"]]
    now = datetime.now(UTC)
    export = httpx.get(stack.gateway.admin_url + "/api/v1/admin/audit/export", timeout=10, params={
        "since": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "until": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "externalId": customer_name},
        headers={"Authorization": stack.admin.http.headers["Authorization"]})
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert lines == [row]


def test_refused_requests_have_rows_unauthenticated_ones_do_not(stack: Stack, customer_name: str) -> None:
    broke = signup(stack.admin, customer_name, credit=0)
    no_credit = stack.chat(broke, COMMERCIAL)
    assert no_credit.status_code == 429
    row = stack.audit_row(no_credit.headers["x-request-id"])
    assert (row["status"], row["externalId"], row["cost"]) == (429, customer_name, 0)
    unknown_model = stack.chat(broke, "no-such-model")
    assert stack.audit_row(unknown_model.headers["x-request-id"])["status"] == 404
    anonymous = stack.chat("sk-not-a-customer-key", COMMERCIAL)
    assert anonymous.status_code == 401
    time.sleep(0.5)
    assert anonymous.headers["x-request-id"] not in {r["requestId"] for r in stack.audit()}


def test_prompt_content_only_when_enabled_and_never_for_byok(
    stack: Stack, default_routes: dict[str, Any], customer_name: str
) -> None:
    on = copy.deepcopy(default_routes)
    on["policy"]["audit"] = {"logPromptContent": True}
    stack.write_routes(on)
    key = signup(stack.admin, customer_name)
    plain = stack.chat(key, COMMERCIAL, text="what is the capital of France")
    assert plain.status_code == 200
    row = stack.audit_row(plain.headers["x-request-id"])
    assert row["prompt"] == "what is the capital of France"
    assert row["completion"] == plain.json()["choices"][0]["message"]["content"]
    streamed = stack.chat(key, COMMERCIAL, text="stream me a story", stream=True)
    assert streamed.status_code == 200
    text = "".join(json.loads(line[5:])["choices"][0]["delta"].get("content") or ""
                   for line in streamed.text.splitlines()
                   if line.startswith("data:") and "[DONE]" not in line and json.loads(line[5:])["choices"])
    srow = stack.audit_row(streamed.headers["x-request-id"])
    assert srow["prompt"] == "stream me a story"
    assert srow["completion"] == text
    assert text
    byok = stack.chat(key, BYOK, text="my confidential plan", **{"X-Provider-Key": "sk-customer-own-key-123456"})
    assert byok.status_code == 200, byok.text
    brow = stack.audit_row(byok.headers["x-request-id"])
    assert brow["decisions"]["byok"] is True
    assert brow["prompt"] is None
    assert brow["completion"] is None
    refused = stack.chat(key, COMMERCIAL, text=BOMB)
    assert stack.audit_row(refused.headers["x-request-id"])["prompt"] == BOMB
    for headers in ({"X-Provider-Key": "sk-customer-own-key-123456", "X-Provider": "bogus"},  # refused: 400
                    {"X-Provider-Key": "sk-bad key with spaces"}):  # refused: not a key
        rejected = stack.chat(key, BYOK, text="my confidential plan", **headers)
        assert rejected.status_code == 400
        rrow = stack.audit_row(rejected.headers["x-request-id"])
        assert rrow["decisions"]["byok"] is True
        assert rrow["prompt"] is None, "a refused BYOK request is still a BYOK request"


def test_audit_off_writes_nothing(stack: Stack, default_routes: dict[str, Any], customer_name: str) -> None:
    off = copy.deepcopy(default_routes)
    off["policy"]["audit"] = {"enabled": False}
    stack.write_routes(off)
    key = signup(stack.admin, customer_name)
    served = stack.chat(key, COMMERCIAL)
    refused = stack.chat(key, COMMERCIAL, country="IR")
    assert (served.status_code, refused.status_code) == (200, 451)
    time.sleep(1.0)  # batched writes land within 0.2 s
    assert stack.audit(customer_name) == []
    assert len(stack.admin.debits(customer_name)) == 1, "metering goes on without the audit log"


def test_retention_job_deletes_rows_past_retention(
    stack: Stack, default_routes: dict[str, Any], customer_name: str
) -> None:
    short = copy.deepcopy(default_routes)
    short["policy"]["audit"] = {"retentionDays": 2}
    stack.write_routes(short)
    key = signup(stack.admin, customer_name)
    fresh = stack.chat(key, COMMERCIAL)
    assert fresh.status_code == 200
    stack.audit_row(fresh.headers["x-request-id"])
    now = datetime.now(UTC)
    old = [AuditEvent(ts=now - timedelta(days=3, minutes=i), request_id=f"old-{customer_name}-{i}", status=200)
           for i in range(2500)]
    kept = [AuditEvent(ts=now - timedelta(days=1), request_id=f"recent-{customer_name}", status=200)]

    async def insert() -> None:
        store = create_store(sqlite_path=stack.gateway.backend.sqlite_path or "")
        await store.open()
        try:
            await store.add_audit_events([*old, *kept])
        finally:
            await store.close()

    asyncio.run(insert())

    def ids() -> set[str]:
        return {r["requestId"] for r in stack.audit(minutes=60 * 24 * 5)}

    deadline = time.monotonic() + 30
    while any(i.startswith(f"old-{customer_name}") for i in ids()):
        assert time.monotonic() < deadline, "old rows were not deleted by the retention job"
        time.sleep(0.2)
    left = ids()
    assert f"recent-{customer_name}" in left
    assert fresh.headers["x-request-id"] in left
    assert "audit retention deleted" in stack.gateway.logs()



# -- admin API ---------------------------------------------------------------------------------------


def test_admin_compliance_endpoints(stack: Stack, default_routes: dict[str, Any]) -> None:
    doc = stack.admin.ok("GET", "/openapi.json")
    assert doc["paths"]["/api/v1/admin/compliance"]["get"]["operationId"]
    assert doc["paths"]["/api/v1/admin/compliance/retention-probe"]["post"]["operationId"]
    assert {"ComplianceSummary", "RetentionProbe", "RetentionProbeRequest"} <= set(doc["components"]["schemas"])
    summary = stack.admin.ok("GET", "/compliance")
    assert summary["routingTableVersion"] == stack.version()
    assert summary["commercialProviders"] == ["Demo AI"]
    assert summary["unattestedChannels"] == []
    assert summary["disclosure"] == {"path": "/legal/llm-providers", "status": 200}
    assert "contract-42" not in json.dumps(summary)
    bad = stack.admin.call("POST", "/compliance/retention-probe", {"marker": "sk-live-realkey0123456789abcdef"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "marker"
    unknown = stack.admin.call("POST", "/compliance/retention-probe", {"marker": "sk-probe-" + "x" * 20, "x": 1})
    assert unknown.status_code == 400
    probe = stack.admin.ok("POST", "/compliance/retention-probe", {"marker": "sk-probe-" + "x" * 20})
    assert probe["found"] is False
    assert probe["scanned"]["database"]["backend"] == "sqlite"
    anonymous = httpx.get(stack.gateway.admin_url + "/api/v1/admin/compliance", timeout=10)
    assert anonymous.status_code == 401
    customer_port = httpx.get(stack.url + "/api/v1/admin/compliance", timeout=10)
    assert customer_port.status_code == 404, "never on the customer port"
