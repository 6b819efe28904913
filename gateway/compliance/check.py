"""``newapi compliance-check``: the blueprint's compliance smoke test against a live stack.

Each control is checked from the outside, through the public and admin APIs (and, with a
kubeconfig, the Channel objects), and reported as PASS, FAIL or SKIP with what was seen:

``attestation``
    Every channel of the routing table in force is attested (its attestation kind fits its type
    and its Channel's ``Attested`` condition was True when the table was rendered), read from the
    admin API's compliance summary (``GET /api/v1/admin/compliance``). With ``--kubeconfig``, also
    every enabled Channel object of ``--namespace``: conditions ``Attested`` and ``Valid`` True for
    the current generation, and the attestation rules re-checked here. The summary sees what the
    gateway routes to (works without cluster credentials, standalone too); the objects also show
    Channels the operator excluded and whether the operator has caught up. Use both when you can.
``disclosure``
    ``GET /legal/llm-providers`` answers 200 in HTML and JSON without a key, and lists every
    commercial provider of the routing table (the summary's ``commercialProviders``).
``sanctioned-regions``
    A request marked as coming from each region of ``--regions`` (default the seed's baseline:
    IR, KP, SY, CU and UA-43 for RU-occupied-UA) through ``--country-header`` gets 451
    ``unavailable_for_legal_reasons`` naming the region — not the unknown-country refusal, which
    would mean the header was ignored: **the check must reach the gateway from an address in
    ``geo.trustedProxyCIDRs``** (e.g. through the ingress, or from a host the instance trusts).
``byok-isolation``
    A made-up provider key ``sk-probe-<random>`` is sent through the gateway as a BYOK key (one
    plain and one streamed request, from ``--probe-country``); the answers must not echo it, and
    the admin API's retention probe (``POST /api/v1/admin/compliance/retention-probe``), which
    searches the database and Redis for the marker and its SHA-256, must not find it.
``audit-log``
    ``audit.enabled`` is true and every probe request above has its audit row (found through
    ``GET /api/v1/admin/audit``); the geo probes' rows carry the geo decision.

The request checks need a customer key (``--key``); without it they are SKIPped. Exit status:
0 when every control passed, 1 otherwise (a SKIP is not a pass), 2 on bad arguments.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

ADMIN_BASE = "/api/v1/admin"
DISCLOSURE_PATH = "/legal/llm-providers"
#: The seed's sanctioned baseline; UA-43 (Crimea) stands for the region RU-occupied-UA.
DEFAULT_REGIONS: tuple[str, ...] = ("IR", "KP", "SY", "CU", "UA-43")
CONTROLS: tuple[str, ...] = ("attestation", "disclosure", "sanctioned-regions", "byok-isolation", "audit-log")
GEO_CODE = "unavailable_for_legal_reasons"
UNKNOWN_COUNTRY_HINT = "could not be determined"

Outcome = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class CheckConfig:
    """What to check and how to reach it."""

    url: str
    admin_url: str
    admin_token: str
    key: str | None = None
    kubeconfig: str | None = None
    namespace: str = "default"
    country_header: str = "CF-IPCountry"
    regions: tuple[str, ...] = DEFAULT_REGIONS
    probe_country: str = "US"
    model: str | None = None
    byok_model: str | None = None
    timeout: float = 20.0
    audit_wait: float = 15.0
    #: The BYOK probe's marker (default: a new random ``sk-probe-...`` per run).
    probe_marker: str | None = None


@dataclass(frozen=True)
class Result:
    control: str
    outcome: Outcome
    detail: str


@dataclass
class _Run:
    """State shared between the checks of one run."""

    cfg: CheckConfig
    http: httpx.AsyncClient
    started: datetime
    summary: dict[str, Any] | None = None
    summary_error: str | None = None
    #: request id -> what it probed (for the audit check)
    probes: dict[str, str] = field(default_factory=dict)
    geo_probe_ids: list[str] = field(default_factory=list)


# -- helpers -------------------------------------------------------------------------------------


def _admin_headers(cfg: CheckConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {cfg.admin_token}"}


def _error_code(response: httpx.Response) -> tuple[str | None, str]:
    try:
        doc = response.json()
    except ValueError:
        return None, response.text[:200]
    err = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(err, dict):
        return err.get("code") or err.get("type"), str(err.get("message") or "")
    return None, response.text[:200]


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _pick_model(summary: dict[str, Any] | None, kind: str) -> str | None:
    """A model of a routable channel: ``commercial`` (operator contract; preferably one no in-cluster
    channel also serves, which could answer a sanctioned region legitimately) or ``byok``."""
    if summary is None:
        return None
    channels = [ch for ch in summary.get("channels", []) if ch.get("routable", True) and ch.get("models")]
    if kind == "byok":
        return next((str(ch["models"][0]) for ch in channels if ch.get("type") == "byok-passthrough"), None)
    in_cluster = {m for ch in channels if ch.get("type") == "vllm" for m in ch["models"]}
    commercial = [str(m) for ch in channels if ch.get("commercial") for m in ch["models"]]
    return next((m for m in commercial if m not in in_cluster), commercial[0] if commercial else None)


async def _load_summary(run: _Run) -> None:
    try:
        rsp = await run.http.get(run.cfg.admin_url + ADMIN_BASE + "/compliance", headers=_admin_headers(run.cfg))
    except httpx.HTTPError as exc:
        run.summary_error = f"admin API unreachable at {run.cfg.admin_url}: {type(exc).__name__}: {exc}"
        return
    if rsp.status_code != 200:
        code, message = _error_code(rsp)
        run.summary_error = f"admin API answered {rsp.status_code} ({code}: {message})"
        return
    run.summary = rsp.json()


# -- attestation ---------------------------------------------------------------------------------


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == kind:
            return cond
    return None


def channel_object_problems(obj: dict[str, Any]) -> list[str]:
    """Why one Channel object is not attested and valid (empty: it is). Pure."""
    from pydantic import ValidationError

    from newapi_operator.api.compliance import check_channel
    from newapi_operator.api.v1alpha1 import ChannelSpec

    name = (obj.get("metadata") or {}).get("name", "?")
    spec = obj.get("spec") or {}
    if spec.get("enabled") is False:
        return []
    problems: list[str] = []
    try:
        parsed = ChannelSpec.model_validate(spec)
    except ValidationError as err:
        problems.append(f"Channel/{name}: spec does not validate ({err.error_count()} errors)")
    else:
        problems.extend(f"Channel/{name}: {v}" for v in check_channel(parsed) if v.field.startswith("spec.attestation"))
    generation = (obj.get("metadata") or {}).get("generation")
    for kind in ("Attested", "Valid"):
        cond = _condition(obj, kind)
        if cond is None:
            problems.append(f"Channel/{name}: no {kind} condition (the operator has not reconciled it)")
        elif cond.get("status") != "True":
            problems.append(f"Channel/{name}: {kind}={cond.get('status')} ({cond.get('reason')}: "
                            f"{cond.get('message', '')})")
        elif generation is not None and cond.get("observedGeneration") not in (None, generation):
            problems.append(f"Channel/{name}: {kind} is for generation {cond.get('observedGeneration')}, the "
                            f"object is at {generation} (the operator has not caught up)")
    return problems


async def _channel_objects(kubeconfig: str, namespace: str) -> list[dict[str, Any]]:
    from kubernetes_asyncio import client, config

    api_client = await config.new_client_from_config(config_file=kubeconfig)
    try:
        api = client.CustomObjectsApi(api_client)
        doc = await api.list_namespaced_custom_object("newapi.openova.io", "v1alpha1", namespace, "channels")
        items: list[dict[str, Any]] = doc.get("items", [])
        return items
    finally:
        await api_client.close()


async def check_attestation(run: _Run) -> Result:
    problems: list[str] = []
    seen: list[str] = []
    summary = run.summary
    if summary is not None:
        for ch in summary.get("channels", []):
            problem = (ch.get("attestation") or {}).get("problem")
            if problem:
                problems.append(f"channel {ch.get('name')}: {problem}")
        seen.append(f"{len(summary.get('channels', []))} routed channels")
    cfg = run.cfg
    if cfg.kubeconfig:
        try:
            objects = await _channel_objects(cfg.kubeconfig, cfg.namespace)
        except Exception as exc:
            problems.append(f"cannot list Channel objects in namespace {cfg.namespace}: {type(exc).__name__}: {exc}")
        else:
            enabled = [o for o in objects if (o.get("spec") or {}).get("enabled") is not False]
            for obj in enabled:
                problems.extend(channel_object_problems(obj))
            seen.append(f"{len(enabled)} enabled Channel objects in {cfg.namespace}")
    if summary is None and not cfg.kubeconfig:
        return Result("attestation", "FAIL", f"nothing to check: {run.summary_error}; give a working admin API "
                                             "or --kubeconfig")
    if summary is None:
        problems.append(f"routing table not checked: {run.summary_error}")
    if problems:
        return Result("attestation", "FAIL", "; ".join(problems))
    return Result("attestation", "PASS", "every channel attested (" + ", ".join(seen) + ")")


# -- disclosure ----------------------------------------------------------------------------------


async def check_disclosure(run: _Run) -> Result:
    url = run.cfg.url + DISCLOSURE_PATH
    try:
        as_json = await run.http.get(url, headers={"Accept": "application/json"})
        as_html = await run.http.get(url, headers={"Accept": "text/html"})
    except httpx.HTTPError as exc:
        return Result("disclosure", "FAIL", f"{url} unreachable: {type(exc).__name__}: {exc}")
    if as_json.status_code != 200:
        code, message = _error_code(as_json)
        why = "reseller.disclosureRequired must be true and at least one channel bound"
        return Result("disclosure", "FAIL", f"{url} answered {as_json.status_code} ({code}: {message}); {why}")
    if as_html.status_code != 200 or not as_html.headers.get("content-type", "").startswith("text/html"):
        return Result("disclosure", "FAIL", f"{url} as HTML answered {as_html.status_code} "
                                            f"{as_html.headers.get('content-type')}")
    try:
        listed = {str(p["name"]).casefold() for p in as_json.json().get("providers", [])}
    except (ValueError, KeyError, TypeError, AttributeError):
        return Result("disclosure", "FAIL", f"{url} did not answer the JSON disclosure document")
    if run.summary is None:
        return Result("disclosure", "FAIL", f"page reachable, but the providers it must list are unknown: "
                                            f"{run.summary_error}")
    expected = [str(p) for p in run.summary.get("commercialProviders", [])]
    missing = [p for p in expected if p.casefold() not in listed]
    if missing:
        return Result("disclosure", "FAIL", f"{url} does not list commercial provider(s) {', '.join(missing)} "
                                            "(unattested channels are not published)")
    return Result("disclosure", "PASS", f"published (HTML and JSON), lists {len(expected)} commercial "
                                        f"provider(s): {', '.join(expected) or 'none'}")


# -- requests ------------------------------------------------------------------------------------


def _chat(model: str, text: str, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return body


async def check_sanctioned_regions(run: _Run) -> Result:
    cfg = run.cfg
    if not cfg.key:
        return Result("sanctioned-regions", "SKIP", "not run: give --key (a customer key) for the request checks")
    model = cfg.model or _pick_model(run.summary, "commercial")
    if model is None:
        return Result("sanctioned-regions", "FAIL", "no model of a commercial channel to probe (give --model); "
                                                    f"{run.summary_error or 'the routing table has none'}")
    failures: list[str] = []
    ignored: list[str] = []
    for region in cfg.regions:
        headers = {"Authorization": f"Bearer {cfg.key}", cfg.country_header: region}
        try:
            rsp = await run.http.post(cfg.url + "/v1/chat/completions", headers=headers,
                                      json=_chat(model, "compliance-check geo probe"))
        except httpx.HTTPError as exc:
            failures.append(f"{region}: request failed ({type(exc).__name__}: {exc})")
            continue
        request_id = rsp.headers.get("x-request-id")
        if request_id:
            run.probes[request_id] = f"geo probe {region}"
            run.geo_probe_ids.append(request_id)
        code, message = _error_code(rsp)
        if rsp.status_code != 451 or code != GEO_CODE:
            failures.append(f"{region}: got {rsp.status_code} ({code}) instead of 451 {GEO_CODE}")
        elif UNKNOWN_COUNTRY_HINT in message:
            ignored.append(region)
    if ignored:
        failures.append(f"{', '.join(ignored)}: 451 for an UNKNOWN location — the gateway ignored "
                        f"{cfg.country_header}; run the check from an address in geo.trustedProxyCIDRs")
    if failures:
        return Result("sanctioned-regions", "FAIL", "; ".join(failures))
    return Result("sanctioned-regions", "PASS", f"451 for {', '.join(cfg.regions)} on model {model} "
                                                f"(via {cfg.country_header})")


async def _byok_request(run: _Run, model: str, marker: str, provider: str | None, stream: bool) -> str | None:
    """Send one BYOK probe; returns a problem or None."""
    cfg = run.cfg
    headers = {"Authorization": f"Bearer {cfg.key}", "X-Provider-Key": marker, cfg.country_header: cfg.probe_country}
    if provider:
        headers["X-Provider"] = provider
    try:
        rsp = await run.http.post(cfg.url + "/v1/chat/completions", headers=headers,
                                  json=_chat(model, "compliance-check byok probe", stream))
    except httpx.HTTPError as exc:
        return f"BYOK probe request failed ({type(exc).__name__}: {exc})"
    request_id = rsp.headers.get("x-request-id")
    if request_id:
        run.probes[request_id] = "byok probe" + (" (stream)" if stream else "")
    echoed = rsp.text + " ".join(f"{k}: {v}" for k, v in rsp.headers.items())
    secret_part = marker.removeprefix("sk-probe-")
    if marker in echoed or secret_part in echoed or secret_part[-6:] in echoed:
        return f"the gateway's answer ({rsp.status_code}) echoes the BYOK key"
    return None


async def _probe_store(run: _Run, marker: str) -> tuple[bool | None, str]:
    """``(found, detail)`` from the admin retention probe; found None when it could not run."""
    cfg = run.cfg
    body = {"marker": marker, "since": _rfc3339(run.started - timedelta(minutes=5))}
    try:
        rsp = await run.http.post(cfg.admin_url + ADMIN_BASE + "/compliance/retention-probe", json=body,
                                  headers=_admin_headers(cfg), timeout=max(cfg.timeout, 300.0))
    except httpx.HTTPError as exc:
        return None, f"retention probe failed: {type(exc).__name__}: {exc}"
    if rsp.status_code != 200:
        code, message = _error_code(rsp)
        return None, f"retention probe answered {rsp.status_code} ({code}: {message})"
    doc = rsp.json()
    hits = doc.get("hits", [])
    where = ", ".join(f"{h.get('store')} {h.get('where')} ({h.get('form')}, {h.get('count')}x)" for h in hits)
    return bool(doc.get("found")), where or _scanned(doc.get("scanned") or {})


def _scanned(scanned: dict[str, Any]) -> str:
    db = scanned.get("database") or {}
    text = f"searched {db.get('tables', 0)} tables / {db.get('rows', 0)} rows ({db.get('backend')})"
    redis = scanned.get("redis")
    return text + (f" and {redis.get('keys', 0)} Redis keys" if isinstance(redis, dict) else ", no Redis")


async def check_byok(run: _Run) -> Result:
    cfg = run.cfg
    if not cfg.key:
        return Result("byok-isolation", "SKIP", "not run: give --key (a customer key) for the request checks")
    marker = cfg.probe_marker or "sk-probe-" + secrets.token_urlsafe(24)
    model = cfg.byok_model or _pick_model(run.summary, "byok") or cfg.model or _pick_model(run.summary, "commercial")
    if model is None:
        return Result("byok-isolation", "FAIL", "no model to send the BYOK probe to (give --byok-model)")
    provider: str | None = None
    for ch in (run.summary or {}).get("channels", []):
        if ch.get("type") == "byok-passthrough" and model in ch.get("models", []) and ch.get("allowedProviders"):
            provider = str(ch["allowedProviders"][0])
            break
    problems = [p for p in [await _byok_request(run, model, marker, provider, False),
                            await _byok_request(run, model, marker, provider, True)] if p]
    await _wait_for_audit(run, [rid for rid, what in run.probes.items() if what.startswith("byok")])
    found, detail = await _probe_store(run, marker)
    if found is None:
        problems.append(detail)
    elif found:
        problems.append(f"the probe key was retained: {detail}")
    if problems:
        return Result("byok-isolation", "FAIL", "; ".join(problems))
    return Result("byok-isolation", "PASS", f"probe key not echoed and not stored ({detail}); model {model}")


# -- audit ---------------------------------------------------------------------------------------


async def _audit_rows(run: _Run) -> dict[str, dict[str, Any]] | None:
    cfg = run.cfg
    params = {"since": _rfc3339(run.started - timedelta(minutes=5)),
              "until": _rfc3339(datetime.now(UTC) + timedelta(minutes=5)), "limit": "10000"}
    rows: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    for _ in range(100):
        if cursor:
            params["cursor"] = cursor
        try:
            rsp = await run.http.get(cfg.admin_url + ADMIN_BASE + "/audit", params=params,
                                     headers=_admin_headers(cfg))
        except httpx.HTTPError:
            return None
        if rsp.status_code != 200:
            return None
        doc = rsp.json()
        for row in doc.get("data", []):
            rows.setdefault(str(row.get("requestId")), row)
        cursor = doc.get("nextCursor")
        if not cursor:
            break
    return rows


async def _wait_for_audit(run: _Run, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Poll the audit log until every id has a row (or ``audit_wait`` passes); the rows found."""
    deadline = time.monotonic() + run.cfg.audit_wait
    rows: dict[str, dict[str, Any]] = {}
    audit = ((run.summary or {}).get("policy") or {}).get("audit") or {}
    if not request_ids or audit.get("enabled") is False:
        await asyncio.sleep(min(2.0, run.cfg.audit_wait))  # let batched writes land before probing
        return rows
    while True:
        rows = await _audit_rows(run) or {}
        if all(rid in rows for rid in request_ids) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.3)


async def check_audit(run: _Run) -> Result:
    audit = ((run.summary or {}).get("policy") or {}).get("audit")
    if audit is None:
        return Result("audit-log", "FAIL", f"audit settings unknown: {run.summary_error}")
    if not audit.get("enabled"):
        return Result("audit-log", "FAIL", "audit.enabled is false: requests leave no audit row")
    if not run.probes:
        return Result("audit-log", "SKIP", "audit enabled (retention "
                                           f"{audit.get('retentionDays')} days); no probe request to look up "
                                           "(give --key)")
    rows = await _wait_for_audit(run, list(run.probes))
    missing = [f"{what} ({rid})" for rid, what in run.probes.items() if rid not in rows]
    problems = [f"no audit row for {', '.join(missing)}"] if missing else []
    for rid in run.geo_probe_ids:
        row = rows.get(rid)
        if row is not None and not str((row.get("decisions") or {}).get("geo", "")).startswith("block"):
            problems.append(f"audit row of {rid} lacks the geo decision (decisions: {row.get('decisions')})")
    if problems:
        return Result("audit-log", "FAIL", "; ".join(problems))
    return Result("audit-log", "PASS", f"{len(run.probes)} probe requests audited; retention "
                                       f"{audit.get('retentionDays')} days")


# -- the run -------------------------------------------------------------------------------------


async def run_checks(cfg: CheckConfig) -> list[Result]:
    """Run every control (see the module docstring); never raises for a failing stack."""
    async with httpx.AsyncClient(timeout=cfg.timeout, follow_redirects=False) as http:
        run = _Run(cfg, http, datetime.now(UTC))
        await _load_summary(run)
        results = [await check_attestation(run), await check_disclosure(run)]
        results.append(await check_sanctioned_regions(run))
        results.append(await check_byok(run))
        results.append(await check_audit(run))
        return results


def render_table(results: Sequence[Result]) -> str:
    """The pass/fail table printed by the command."""
    width = max(len("CONTROL"), *(len(r.control) for r in results))
    lines = [f"{'CONTROL':<{width}}  RESULT  DETAIL"]
    lines.extend(f"{r.control:<{width}}  {r.outcome:<6}  {r.detail}" for r in results)
    failed = [r.control for r in results if r.outcome != "PASS"]
    lines.append("")
    lines.append("compliance check passed" if not failed else f"compliance check FAILED: {', '.join(failed)}")
    return "\n".join(lines)


def exit_code(results: Sequence[Result]) -> int:
    return 0 if all(r.outcome == "PASS" for r in results) else 1
