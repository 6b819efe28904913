"""10,000 CustomerKeys: key lookup latency (cache cold and warm) and the gateway's memory.

The full-path gateway (PostgreSQL + Redis on the load CPU, the gateway alone on the SUT CPU) gets
``count`` customers, each with one key and a credit grant, through the admin API's one-call
signup (``POST /api/v1/admin/users``; the time is reported as keys/s). Then:

- **cold / warm pairs**: for ``pairs`` keys picked at random, two back-to-back requests on one
  keep-alive connection: the first finds the key in no cache (the key cache's TTL is 1 s and
  nothing touched the key before: a database lookup), the second hits the in-process cache;
- **random keys under load**: wrk at 32 connections, every request with a key drawn at random
  from all ``count`` keys (so most requests miss the 1 s cache);
- **RSS** of the gateway: started empty, after the keys were created, after the measurements.
"""

from __future__ import annotations

import http.client
import json
import random
import shlex
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import httpclient, procs, stats, wrk
from .scenarios import (
    CHAT_PATH,
    DEFAULT_FULLPATH_COMMAND,
    FULLPATH_ADMIN_TOKEN,
    FULLPATH_LIMITS,
    FULLPATH_TIER,
    GATEWAY_READY_PATH,
    StateServers,
    Unavailable,
    fullpath_files,
    newapi_script,
)

ADMIN_USERS_PATH = "/api/v1/admin/users"
#: Credit per customer (micro-credits): far more than the run can spend.
KEY_CREDIT = 10**12
#: Seconds to wait after the keys were created, above the key cache's TTL (1 s), so nothing is cached.
CACHE_TTL_WAIT_S = 1.5


def signup_body(index: int, tier: str = FULLPATH_TIER, credit: int = KEY_CREDIT) -> dict[str, Any]:
    """The admin API's one-call signup for bench customer ``index`` (customer, key, credit)."""
    ext = f"kl-{index:05d}"
    return {"externalId": ext, "idempotencyKey": f"signup-{ext}", "displayName": f"key lookup {index}",
            "tier": tier, "rateLimit": dict(FULLPATH_LIMITS), "creditGrant": credit}


def signup_chunks(count: int, workers: int) -> tuple[range, list[range]]:
    """Signup indices: the first one alone, the rest split among ``workers`` connections (pure).

    The first goes alone because the admin API creates its side tables on first use, and
    concurrent first uses race on PostgreSQL (CREATE TABLE IF NOT EXISTS -> unique violation, 500).
    """
    if count < 0 or workers < 1:
        raise ValueError(f"signup_chunks: count must be >= 0 and workers >= 1, got {count}, {workers}")
    step = max(1, -(-(count - 1) // workers))
    return range(min(1, count)), [range(start, min(start + step, count)) for start in range(1, count, step)]


def random_key_lua(keys: Sequence[str], body: str) -> str:
    """A wrk script: every request carries a key drawn at random from ``keys``."""
    if not keys:
        raise ValueError("random_key_lua needs at least one key")
    table = ",\n".join(wrk.lua_string(k) for k in keys)
    return wrk.lua_script("POST", body, {"Content-Type": "application/json"}) + (
        f"local keys = {{\n{table}\n}}\n"
        "math.randomseed(os.time())\n"
        "request = function()\n"
        "  local key = keys[math.random(#keys)]\n"
        '  return wrk.format(nil, nil, {["Content-Type"] = "application/json", '
        '["Authorization"] = "Bearer " .. key}, nil)\n'
        "end\n"
    )


@dataclass
class PairTimings:
    """Cold and warm request times (ns) of the sampled keys, and the non-200 answers."""

    cold_ns: list[int]
    warm_ns: list[int]
    errors: int


def pair_summary(pairs: PairTimings) -> dict[str, Any]:
    """Cold vs warm percentiles (ms) and the cold-minus-warm p50 (pure)."""
    out: dict[str, Any] = {"n": len(pairs.cold_ns), "errors": pairs.errors}
    if pairs.cold_ns and pairs.warm_ns:
        cold, warm = stats.summarize_ns(pairs.cold_ns), stats.summarize_ns(pairs.warm_ns)
        out.update(cold=cold, warm=warm, cold_minus_warm_p50_ms=round(cold["p50"] - warm["p50"], 3))
    return out


def memory_summary(empty_kb: int, created_kb: int, after_kb: int, count: int) -> dict[str, Any]:
    """RSS at each stage (MiB) and the growth per key (bytes) (pure)."""
    return {
        "rss_mib_empty": round(empty_kb / 1024, 1),
        "rss_mib_keys_created": round(created_kb / 1024, 1),
        "rss_mib_after_lookups": round(after_kb / 1024, 1),
        "bytes_per_key_after_lookups": round((after_kb - created_kb) * 1024 / count) if count else None,
    }


# ---------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------


def _create_keys(admin_url: str, count: int, workers: int) -> list[str]:
    """Sign up ``count`` customers through the admin API (``workers`` keep-alive connections)."""
    parts = urlsplit(admin_url)
    headers = {"Authorization": f"Bearer {FULLPATH_ADMIN_TOKEN}", "Content-Type": "application/json"}

    def batch(indices: range) -> list[str]:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        out = []
        try:
            for i in indices:
                conn.request("POST", ADMIN_USERS_PATH, body=json.dumps(signup_body(i)), headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.status not in (200, 201):
                    raise Unavailable(f"admin signup {i} answered {response.status}: {data[:300]!r}")
                out.append(str(json.loads(data)["key"]["key"]))
        finally:
            conn.close()
        return out

    head, rest = signup_chunks(count, workers)
    first = batch(head)
    if not rest:
        return first
    with ThreadPoolExecutor(max_workers=len(rest)) as pool:
        return first + [key for keys in pool.map(batch, rest) for key in keys]


def _pairs(url: str, body: bytes, keys: Sequence[str]) -> PairTimings:
    conn = httpclient.Connection(url)
    cold: list[int] = []
    warm: list[int] = []
    errors = 0
    try:
        for key in keys:
            raw = httpclient.build_request("POST", url + CHAT_PATH, body, {
                "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
            first, second = conn.exchange(raw), conn.exchange(raw)
            if first.status != 200 or second.status != 200:
                errors += 1
                continue
            cold.append(first.total_ns)
            warm.append(second.total_ns)
    finally:
        conn.close()
    return PairTimings(cold, warm, errors)


def _rss(pid: int) -> int:
    return procs.memory_kb(procs.process_tree(pid))["rss_kb"]


def run_keylookup(workdir: Path, upstream_url: str, sut_cpus: str, load_cpu: int, body: dict[str, Any],
                  count: int = 10_000, pairs: int = 2_000, wrk_s: float = 10.0, workers: int = 16,
                  command: str = DEFAULT_FULLPATH_COMMAND, seed: int = 8) -> dict[str, Any]:
    """The whole key-lookup measurement; starts and stops its own PostgreSQL, Redis and gateway."""
    newapi = newapi_script()
    if newapi is None:
        raise Unavailable("no newapi console script next to this interpreter (pip install -e .)")
    workdir.mkdir(parents=True, exist_ok=True)
    servers = StateServers(workdir / "state", str(load_cpu))
    servers.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        port, admin_port = procs.free_port(), procs.free_port()
        values = {"newapi": newapi, "port": str(port), "admin_port": str(admin_port),
                  "database_url": servers.dsn, "redis_url": servers.redis_url,
                  **fullpath_files(workdir, upstream_url)}
        cmd = shlex.split(command.format(**values))
        log = workdir / "gateway.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(["taskset", "-c", sut_cpus, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
        try:
            procs.wait_http(url + GATEWAY_READY_PATH, 60, proc)
        except procs.BenchSetupError as exc:
            raise Unavailable(f"key-lookup gateway did not become ready: {exc}; log: {log}") from None
        empty_kb = _rss(proc.pid)
        started = time.monotonic()
        keys = _create_keys(admin, count, workers)
        create_s = time.monotonic() - started
        time.sleep(CACHE_TTL_WAIT_S)
        created_kb = _rss(proc.pid)
        payload = json.dumps(body)
        sample = random.Random(seed).sample(keys, min(pairs, len(keys)))
        pair_result = pair_summary(_pairs(url, payload.encode(), sample))
        script = workdir / "random-keys.lua"
        script.write_text(random_key_lua(keys, payload))
        done = subprocess.run(wrk.wrk_command(url + CHAT_PATH, str(script), 32, wrk_s), capture_output=True,
                              text=True, timeout=wrk_s + 60)
        if done.returncode != 0:
            raise RuntimeError(f"wrk with random keys failed: {done.stderr.strip() or done.stdout.strip()}")
        random_load = wrk.parse_output(done.stdout).to_json()
        after_kb = _rss(proc.pid)
        return {
            "keys": count,
            "backend": "PostgreSQL + Redis (full path)",
            "create": {"seconds": round(create_s, 2), "keys_per_s": round(count / create_s, 1),
                       "via": f"POST {ADMIN_USERS_PATH} x{count}, {workers} connections"},
            "pairs": pair_result,
            "random_keys_c32": random_load,
            "memory": memory_summary(empty_kb, created_kb, after_kb, count),
            "hwm_mib": round(procs.memory_kb([proc.pid])["hwm_kb"] / 1024, 1),
        }
    finally:
        if proc is not None:
            procs.stop(proc)
        servers.close()
