"""The benchmark harness's parts that are not measurements: wrk scripts and output parsing, the
nginx config, statistics, ratios/targets/table, and the raw HTTP client's framing (against a real
demo upstream, asserting content only, never timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newapi_gateway.demo_upstream import DemoUpstreamProcess

BENCH_DIR = Path(__file__).resolve().parents[2] / "hack" / "bench"
sys.path.insert(0, str(BENCH_DIR))

from gatewaybench import httpclient, procs, report, scenarios, stats, wrk  # noqa: E402

WRK_TEXT = """Running 5s test @ http://127.0.0.1:18081/v1/chat/completions
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.36ms  221.21us   1.26s    87.96%
    Req/Sec    23.50k     1.21k   24.23k    94.00%
  Latency Distribution
     50%  850.00us
     75%    1.40ms
     90%    1.52ms
     99%    2.30ms
  116892 requests in 5.00s, 42.47MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  23373.65
Transfer/sec:      8.49MB
"""


def test_wrk_json_line_is_preferred_and_exact() -> None:
    line = (
        'BENCH_JSON {"requests":1000,"duration_us":2000000,"bytes":5,"errors":{"connect":0,"read":0,'
        '"write":0,"status":4,"timeout":0},"latency_us":{"min":100,"mean":1500.5,"max":9000,"p50":1200,'
        '"p75":1300,"p90":1400,"p99":4000,"p999":8000}}'
    )
    result = wrk.parse_output(WRK_TEXT + line + "\n")
    assert result.requests == 1000
    assert result.rps == 500.0
    assert result.error_count == 4
    assert result.latency_ms["p50"] == 1.2
    assert result.latency_ms["p99"] == 4.0


def test_wrk_text_summary_parsing_with_units() -> None:
    result = wrk.parse_output(WRK_TEXT)
    assert result.requests == 116892
    assert result.duration_s == 5.0
    assert result.rps == 23373.65
    assert result.errors == {"connect": 0, "read": 2, "write": 0, "timeout": 3, "status": 7}
    assert result.latency_ms["p50"] == pytest.approx(0.85)
    assert result.latency_ms["p99"] == pytest.approx(2.3)
    assert result.latency_ms["max"] == pytest.approx(1260.0)
    with pytest.raises(wrk.WrkParseError):
        wrk.parse_output("wrk: connection refused\n")


def test_lua_script_escapes_body_and_headers() -> None:
    body = 'x "quote" backslash \\ ]] é\nnewline'  # raw body text, not JSON-escaped
    script = wrk.lua_script("POST", body, {"Authorization": "Bearer k"})
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Authorization"] = "Bearer k"' in script
    assert "\\034" not in script  # quotes are escaped with a backslash, not numerically
    assert '\\"' in script
    assert "\\195\\169" in script  # é as UTF-8 bytes
    assert "\\010" in script  # the newline
    assert "done = function(summary, latency, requests)" in script
    cmd = wrk.wrk_command("http://h:1/x", "s.lua", 128, 9.6)
    assert cmd == ["wrk", "-t1", "-c128", "-d10s", "--timeout=5s", "--latency", "-s", "s.lua", "http://h:1/x"]


def test_nginx_conf_is_the_documented_floor(tmp_path: Path) -> None:
    conf = scenarios.nginx_conf(tmp_path, 8081, "127.0.0.1", 9000, as_root=True)
    for needle in (
        "worker_processes 1;",
        "daemon off;",
        "keepalive 256;",
        "proxy_buffering off;",
        'proxy_set_header Connection "";',
        "proxy_http_version 1.1;",
        "server 127.0.0.1:9000;",
        "listen 127.0.0.1:8081;",
        "access_log off;",
        "user root;",
    ):
        assert needle in conf
    assert "user root;" not in scenarios.nginx_conf(tmp_path, 1, "h", 2, as_root=False)


def test_gateway_files_and_command_template(tmp_path: Path) -> None:
    files = scenarios.gateway_files(tmp_path, "http://127.0.0.1:9000")
    routes = json.loads(Path(files["routes"]).read_text())
    assert routes["channels"][0]["endpoint"] == "http://127.0.0.1:9000/v1"
    assert routes["channels"][0]["models"] == [scenarios.BENCH_MODEL]
    keys = json.loads(Path(files["keys"]).read_text())
    assert keys["keys"][0]["key"] == scenarios.BENCH_KEY
    rendered = scenarios.DEFAULT_GATEWAY_COMMAND.format(newapi="newapi", port="1", **files)
    assert rendered.startswith("newapi gateway ")
    assert "{" not in rendered


def test_percentiles() -> None:
    values = list(range(1, 101))
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile([7], 50) == 7
    summary = stats.summarize_ns([1_000_000, 3_000_000, 2_000_000])
    assert summary["p50"] == 2.0
    assert summary["max"] == 3.0
    assert summary["n"] == 3


def _result(rps: float, p50_1: float, first: float) -> dict[str, object]:
    return {
        "available": True,
        "c32": {"rps": rps, "latency_ms": {"p50": 1.0, "p99": 2.0}, "errors": {"status": 0}},
        "c128": {"rps": rps * 1.1, "latency_ms": {"p50": 4.0, "p99": 8.0}, "errors": {"status": 0}},
        "one_conn": {"p50": p50_1, "p99": p50_1 * 2},
        "stream": {"first_chunk": {"p50": first}, "done": {"p50": first * 2}},
        "memory": {"rss_kb": 40960, "hwm_kb": 51200},
        "cpu_ms_per_req": 0.05,
    }


def test_ratios_targets_and_table() -> None:
    results = {
        "direct": _result(10000, 0.10, 0.20),
        "nginx": _result(8000, 0.20, 0.30),
        "gateway": _result(4000, 0.70, 0.50),
        "other": {"available": False, "reason": "`newapi gateway` is not implemented yet"},
    }
    table = report.ratios(results)
    assert table["gateway"]["rps_c32_vs_nginx"] == 0.5
    assert table["gateway"]["rps_c32_vs_direct"] == 0.4
    assert table["gateway"]["added_p50_1conn_ms_vs_direct"] == 0.6
    assert table["gateway"]["added_first_chunk_p50_ms_vs_direct"] == 0.3
    assert table["nginx"]["rps_c128_vs_direct"] == 0.8
    assert "other" not in table
    checks = {c["key"]: c["status"] for c in report.check_targets(table)}
    assert checks["added_p50_1conn_ms_vs_direct"] == "FAIL"
    assert checks["added_first_chunk_p50_ms_vs_direct"] == "pass"
    assert checks["rps_c32_vs_nginx"] == "pass"
    text = report.table(results)
    assert "other     not available: `newapi gateway` is not implemented yet" in text
    assert "[FAIL] gateway: added p50 at one connection <= 0.5 ms (measured 0.600)" in text
    assert "10,000" in text
    # Without a gateway result the targets are "not measured", never a pass.
    assert {c["status"] for c in report.check_targets(report.ratios({"direct": results["direct"]}))} == {"not measured"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[DemoUpstreamProcess]:
    up = DemoUpstreamProcess.spawn(name="harness", record=10)
    yield up
    up.stop()


def test_raw_client_reads_json_and_chunked_streams(upstream: DemoUpstreamProcess) -> None:
    url = upstream.url + scenarios.CHAT_PATH
    headers = {"Content-Type": "application/json", "Authorization": "Bearer k"}
    body = {"model": "m", "messages": [{"role": "user", "content": "a b"}]}
    plain = httpclient.build_request("POST", url, json.dumps(body).encode(), headers)
    assert plain.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    timings = httpclient.run_sequential(upstream.url, plain, count=5, warmup=1)
    assert [t.status for t in timings] == [200] * 5
    stream = httpclient.build_request("POST", url, json.dumps({**body, "stream": True}).encode(), headers)
    conn = httpclient.Connection(upstream.url)
    try:
        first = conn.exchange(stream, watch_stream=True)
        again = conn.exchange(plain)  # the same keep-alive connection after a chunked response
    finally:
        conn.close()
    assert first.status == 200
    assert first.first_data_ns is not None
    assert first.done_ns is not None
    assert first.first_data_ns <= first.done_ns <= first.total_ns
    assert again.status == 200
    assert len(upstream.requests()) == 8


def test_gateway_scenario_reports_unavailable_instead_of_failing(tmp_path: Path) -> None:
    ctx = scenarios.Context(upstream_url="http://127.0.0.1:9", upstream_pid=0, workdir=tmp_path, sut_cpus="0", tools={})
    broken = scenarios.Gateway(command=f"{sys.executable} -c \"print('boom: bad routes')\"")
    with pytest.raises(scenarios.Unavailable, match="boom: bad routes"):
        broken.start(ctx)
    with pytest.raises(scenarios.Unavailable, match="unknown placeholder 'nope'"):
        scenarios.Gateway(command="{newapi} gateway --x {nope}").start(ctx)


def test_make_background_lowers_the_process_and_its_autogroup() -> None:
    """A process in a session of its own (as every PostgreSQL backend is) ends up at nice 19, and so
    does its scheduling group when the kernel groups by session (otherwise nice alone would not count)."""
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        assert procs.make_background([child.pid, 2**22 + 12345]) == 1  # a vanished pid is skipped
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == procs.BACKGROUND_NICE
        group = Path(f"/proc/{child.pid}/autogroup")
        autogroups = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1" and group.exists()
        if autogroups:
            assert group.read_text().split()[-1] == str(procs.BACKGROUND_NICE)
        # a process in our session: its nice value only; the session's group (ours) is left alone
        mine = Path(f"/proc/{os.getpid()}/autogroup").read_text() if autogroups else ""
        sibling = subprocess.Popen(["sleep", "30"])
        try:
            assert procs.make_background([sibling.pid]) == 1
            assert os.getpriority(os.PRIO_PROCESS, sibling.pid) == procs.BACKGROUND_NICE
            if autogroups:
                assert Path(f"/proc/{os.getpid()}/autogroup").read_text() == mine
        finally:
            sibling.kill()
            sibling.wait()
    finally:
        child.kill()
        child.wait()


def test_fullpath_ratio_is_the_median_of_the_paired_rounds() -> None:
    """Interleaved rounds: each round's full-path req/s over the same round's pass-through, the
    median of those is the target figure (drift between rounds cancels); the ratio of the two
    scenarios' median rounds is kept beside it."""
    import run

    def result(c32: list[float], c128: float) -> dict[str, Any]:
        return {"available": True, "c32": {"rps": sorted(c32)[len(c32) // 2], "rounds_rps": c32},
                "c128": {"rps": c128}, "one_conn": {"p50": 0.5}, "cpu_ms_per_req": 0.1}

    results = {"gateway": result([100.0, 140.0, 90.0], 100.0), "direct": result([200.0, 200.0, 200.0], 200.0),
               "fullpath-metering": result([72.0, 84.0, 60.0], 75.0)}
    summary = run.fullpath_summary(results, "fullpath-metering")
    assert summary["paired_rounds"]["rps_c32_vs_gateway"] == [0.72, 0.6, 0.667]
    assert summary["ratios"]["rps_c32_vs_gateway"] == 0.667  # the median round ratio
    assert summary["ratios"]["rps_c32_vs_gateway_of_medians"] == 0.72  # 72 / 100: not what is judged
    assert summary["ratios"]["rps_c128_vs_gateway"] == 0.75  # one round: the plain ratio
    statuses = {t["key"]: t["status"] for t in summary["targets"]}
    assert statuses == {"rps_c32_vs_gateway": "FAIL", "rps_c128_vs_gateway": "pass",
                        "added_p50_1conn_ms_vs_direct": "pass"}


def test_rounds_alternate_the_scenario_order() -> None:
    import run

    names = ["direct", "gateway", "fullpath-metering"]
    assert run.round_order(names, 0) == names
    assert run.round_order(names, 1) == ["fullpath-metering", "gateway", "direct"]
    assert run.round_order(names, 2) == names
    assert names == ["direct", "gateway", "fullpath-metering"]  # not reordered in place
    assert run.FULL.rounds % 2 == 1  # an odd count: the median is one round's ratio


def test_throughput_reports_cpu_per_request_and_busy_share_per_connection_count() -> None:
    import run  # hack/bench/run.py (on sys.path above)

    rounds = run.Throughput(
        runs=[wrk.WrkResult(requests=n, duration_s=2.0, rps=n / 2.0) for n in (20_000, 16_000, 18_000)],
        cpu_s=[1.96, 1.2, 1.8],
        counters={},
    )
    doc = rounds.to_json()
    assert doc["rps"] == 9_000.0  # the median round by req/s
    assert doc["rounds_rps"] == [10_000.0, 8_000.0, 9_000.0]
    # ms of CPU per request per round: 0.098, 0.075, 0.1 -> median 0.098
    assert doc["cpu_ms_per_req"] == 0.098
    # CPU seconds per wall second per round: 0.98, 0.6, 0.9 -> median 0.9
    assert doc["busy"] == 0.9
