"""``newapi compliance-check`` (the real command, as a child process) against a live local stack: it passes
when the stack is configured correctly and fails, naming the control, against one deliberately
misconfigured stack per control (changed through the gateway's hot reload, or the store, or Channel objects
in a local Kubernetes API server)."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess
from newapi_gateway.store import AuditEvent, create_store
from newapi_operator.apiserver import ThreadedAPIServer
from newapi_operator.crdgen import build_crds
from tests.conftest import NEWAPI
from tests.gateway.metering.metered import postgres_backend, sqlite_backend
from tests.services import PostgresServer, RedisServer

from .stack import Stack, routes_doc, running_stack, signup

CONTROLS = ("attestation", "disclosure", "sanctioned-regions", "byok-isolation", "audit-log")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, _shared_demo_upstream: DemoUpstreamProcess) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("check")
    with running_stack(tmp, _shared_demo_upstream.url, sqlite_backend(tmp / "state")) as s:
        yield s


@pytest.fixture(scope="module")
def key(stack: Stack) -> str:
    return signup(stack.admin, "compliance-check-probe", credit=100_000_000)


@pytest.fixture
def good(stack: Stack) -> Iterator[dict[str, Any]]:
    """The correctly configured table; put back after each test."""
    doc = routes_doc(stack.upstream_url)
    stack.write_routes(doc)
    yield copy.deepcopy(doc)
    stack.write_routes(doc)


def check(stack: Stack, key: str | None, *extra: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run the command; ``(exit status, control -> (result, detail), output)``."""
    args = [NEWAPI, "compliance-check", "--url", stack.url, "--admin-url", stack.gateway.admin_url,
            "--admin-token-file", str(stack.gateway.tmp / "admin-token"), "--audit-wait", "10", *extra]
    if key:
        args += ["--key", key]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
    results: dict[str, tuple[str, str]] = {}
    for line in proc.stdout.splitlines():
        match = re.match(r"^(\S+)\s+(PASS|FAIL|SKIP)\s+(.*)$", line)
        if match:
            results[match.group(1)] = (match.group(2), match.group(3))
    return proc.returncode, results, proc.stdout + proc.stderr


def only_failure(results: dict[str, tuple[str, str]], control: str) -> str:
    """Assert ``control`` failed; return its detail."""
    assert results[control][0] == "FAIL", results
    return results[control][1]


def test_passes_against_a_correctly_configured_stack(stack: Stack, key: str, good: dict[str, Any]) -> None:
    code, results, out = check(stack, key)
    assert code == 0, out
    assert {c: r[0] for c, r in results.items()} == dict.fromkeys(CONTROLS, "PASS"), out
    assert "compliance check passed" in out
    assert "IR, KP, SY, CU, UA-43" in results["sanctioned-regions"][1]
    assert "Demo AI" in results["disclosure"][1]


def test_passes_against_a_postgres_and_redis_stack(
    tmp_path: Path, demo_upstream: DemoUpstreamProcess, postgres_server: PostgresServer, redis_server: RedisServer,
) -> None:
    backend = postgres_backend(postgres_server.create_database(), redis_server.fresh_url())
    with running_stack(tmp_path, demo_upstream.url, backend) as pg_stack:
        probe_key = signup(pg_stack.admin, "compliance-check-pg")
        code, results, out = check(pg_stack, probe_key)
    assert code == 0, out
    assert "(postgres) and" in results["byok-isolation"][1]
    assert "Redis keys" in results["byok-isolation"][1]


def test_without_a_key_the_request_checks_do_not_pass(stack: Stack, good: dict[str, Any]) -> None:
    code, results, out = check(stack, None)
    assert code == 1, out
    assert results["sanctioned-regions"][0] == "SKIP"
    assert results["byok-isolation"][0] == "SKIP"
    assert results["attestation"][0] == "PASS"


def test_fails_without_disclosure(stack: Stack, key: str, good: dict[str, Any]) -> None:
    bad = copy.deepcopy(good)
    bad["policy"]["reseller"]["disclosureRequired"] = False
    stack.write_routes(bad)
    code, results, out = check(stack, key)
    assert code == 1, out
    assert "404" in only_failure(results, "disclosure")
    assert results["attestation"][0] == results["sanctioned-regions"][0] == "PASS"
    assert "FAILED: disclosure" in out


def test_fails_when_geo_is_relaxed(stack: Stack, key: str, good: dict[str, Any]) -> None:
    bad = copy.deepcopy(good)
    bad["policy"]["geo"]["sanctionedRegions"] = {"block": ["KP", "SY", "CU", "RU-occupied-UA"],
                                                 "allowRelaxation": True, "justification": "test only"}
    stack.write_routes(bad)
    code, results, out = check(stack, key)
    assert code == 1, out
    detail = only_failure(results, "sanctioned-regions")
    assert "IR: got 200" in detail
    assert "KP:" not in detail
    assert results["disclosure"][0] == "PASS"


def test_fails_when_the_country_header_is_not_trusted(stack: Stack, key: str, good: dict[str, Any]) -> None:
    bad = copy.deepcopy(good)
    bad["policy"]["geo"]["trustedProxyCIDRs"] = ["10.0.0.0/8"]
    stack.write_routes(bad)
    code, results, out = check(stack, key)
    assert code == 1, out
    assert "trustedProxyCIDRs" in only_failure(results, "sanctioned-regions")


def test_fails_with_an_unattested_channel(stack: Stack, key: str, good: dict[str, Any]) -> None:
    bad = copy.deepcopy(good)
    bad["channels"][0]["attestation"]["attested"] = False
    stack.write_routes(bad)
    code, results, out = check(stack, key)
    assert code == 1, out
    assert "channel commercial" in only_failure(results, "attestation")
    assert "Demo AI" in only_failure(results, "disclosure")  # unattested channels are not published


def test_fails_against_a_build_that_retains_the_probe(stack: Stack, key: str, good: dict[str, Any]) -> None:
    marker = "sk-probe-" + secrets.token_urlsafe(24)

    async def retain() -> None:  # what a retaining build would have written: the key in an audit row
        store = create_store(sqlite_path=stack.gateway.backend.sqlite_path or "")
        await store.open()
        try:
            await store.add_audit_events([AuditEvent(ts=datetime.now(UTC), request_id="req_leaky", status=401,
                                                     decisions={"byokKey": marker})])
        finally:
            await store.close()

    asyncio.run(retain())
    code, results, out = check(stack, key, "--probe-marker", marker)
    assert code == 1, out
    detail = only_failure(results, "byok-isolation")
    assert "retained" in detail
    assert "audit_events" in detail
    assert marker not in out, "the checker never prints the marker"
    assert results["sanctioned-regions"][0] == "PASS"


def test_fails_with_the_audit_log_off(stack: Stack, key: str, good: dict[str, Any]) -> None:
    bad = copy.deepcopy(good)
    bad["policy"]["audit"] = {"enabled": False}
    stack.write_routes(bad)
    code, results, out = check(stack, key)
    assert code == 1, out
    assert "audit.enabled is false" in only_failure(results, "audit-log")
    assert results["byok-isolation"][0] == "PASS"


def channel_object(name: str) -> dict[str, Any]:
    return {"apiVersion": "newapi.openova.io/v1alpha1", "kind": "Channel", "metadata": {"name": name},
            "spec": {"type": "openai-compatible", "endpoint": "https://api.openai.com/v1", "models": ["m"],
                     "secretRef": {"name": "openai"},
                     "attestation": {"kind": "commercial-contract", "accountId": "org-1", "contractRef": "c-1"}}}


def conditions(attested: str, generation: int) -> dict[str, Any]:
    now = "2026-05-01T00:00:00Z"
    return {"status": {"attested": attested == "True", "conditions": [
        {"type": "Attested", "status": attested, "reason": "Attested" if attested == "True" else "AttestationInvalid",
         "message": "operator verdict", "observedGeneration": generation, "lastTransitionTime": now},
        {"type": "Valid", "status": "True", "reason": "Valid", "message": "ok", "observedGeneration": generation,
         "lastTransitionTime": now},
    ]}}


def test_channel_objects_are_checked_with_a_kubeconfig(
    stack: Stack, key: str, good: dict[str, Any], tmp_path: Path
) -> None:
    with ThreadedAPIServer(crds=build_crds()) as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        base = f"{server.url}/apis/newapi.openova.io/v1alpha1/namespaces/default/channels"
        with httpx.Client(timeout=30) as kube:
            for name, attested in (("openai", "True"), ("anthropic", "True")):
                created = kube.post(base, json=channel_object(name))
                assert created.status_code == 201, created.text
                generation = created.json()["metadata"]["generation"]
                patched = kube.patch(f"{base}/{name}/status", json=conditions(attested, generation),
                                     headers={"Content-Type": "application/merge-patch+json"})
                assert patched.status_code == 200, patched.text
            code, results, out = check(stack, key, "--kubeconfig", str(kubeconfig), "--namespace", "default")
            assert code == 0, out
            assert "2 enabled Channel objects in default" in results["attestation"][1]
            patched = kube.patch(f"{base}/anthropic/status", json=conditions("False", generation),
                                 headers={"Content-Type": "application/merge-patch+json"})
            assert patched.status_code == 200, patched.text
            kube.post(base, json=channel_object("unreconciled")).raise_for_status()
            code, results, out = check(stack, key, "--kubeconfig", str(kubeconfig), "--namespace", "default")
    assert code == 1, out
    detail = only_failure(results, "attestation")
    assert "Channel/anthropic: Attested=False" in detail
    assert "Channel/unreconciled: no Attested condition" in detail
    assert "Channel/openai" not in detail


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    env_free = {"PATH": "/usr/bin:/bin"}
    base = [NEWAPI, "compliance-check", "--url", "http://127.0.0.1:9", "--admin-url", "http://127.0.0.1:9"]
    no_token = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env_free, check=False)
    assert no_token.returncode == 2
    assert "--admin-token" in no_token.stderr
    bad_marker = subprocess.run([*base, "--admin-token", "t" * 20, "--probe-marker", "sk-live-1234"],
                                capture_output=True, text=True, timeout=60, env=env_free, check=False)
    assert bad_marker.returncode == 2
    assert "sk-probe-" in bad_marker.stderr


def test_an_unreachable_stack_fails_every_control(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t" * 20)
    proc = subprocess.run([NEWAPI, "compliance-check", "--url", "http://127.0.0.1:9", "--admin-url",
                           "http://127.0.0.1:9", "--admin-token-file", str(token), "--key", "sk-x", "--audit-wait", "0",
                           "--output", "json"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is False
    assert {r["control"]: r["result"] for r in doc["results"]} == dict.fromkeys(CONTROLS, "FAIL")
