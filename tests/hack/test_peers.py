"""The side-by-side benchmark's peers and comparison (hack/bench/gatewaybench/peers.py, comparison.py):
configs, environments' preconditions, the loopback preload (run with the real node), ratios and
targets. Nothing here measures or asserts a timing."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

BENCH_DIR = Path(__file__).resolve().parents[2] / "hack" / "bench"
sys.path.insert(0, str(BENCH_DIR))

from gatewaybench import comparison, peers, scenarios  # noqa: E402


def test_litellm_config_routes_the_bench_model_to_the_demo_upstream() -> None:
    config = yaml.safe_load(peers.litellm_config("http://127.0.0.1:4321/"))
    (entry,) = config["model_list"]
    assert entry["model_name"] == scenarios.BENCH_MODEL
    assert entry["litellm_params"] == {"model": f"openai/{scenarios.BENCH_MODEL}",
                                       "api_base": "http://127.0.0.1:4321/v1", "api_key": peers.UPSTREAM_KEY}
    assert config["general_settings"] == {"master_key": peers.LITELLM_MASTER_KEY}  # and no database_url


def test_litellm_env_has_the_local_cost_map_and_no_database(tmp_path: Path) -> None:
    env = peers.litellm_env({"PATH": "/bin", "DATABASE_URL": "postgresql://x", "REDIS_HOST": "r"})
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["LITELLM_LOG"] == "ERROR"
    assert "DATABASE_URL" not in env
    assert "REDIS_HOST" not in env
    assert env["PATH"] == "/bin"
    cmd = peers.litellm_command(tmp_path, tmp_path / "c.yaml", 4000)
    assert cmd[0] == str(tmp_path / "bin" / "litellm")
    assert cmd[cmd.index("--num_workers") + 1] == "1"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert peers.LITELLM_REQUIREMENTS == ("litellm[proxy]==1.106.2", "opentelemetry-sdk")


def test_portkey_package_overrides_hono_node_server_and_routes_by_headers(tmp_path: Path) -> None:
    package = json.loads(peers.portkey_package_json())
    assert package["dependencies"] == {"@portkey-ai/gateway": "*"}
    assert package["overrides"] == {"@hono/node-server": "1.13.5"}
    headers = peers.portkey_headers("http://127.0.0.1:9/")
    assert headers["x-portkey-provider"] == "openai"
    assert headers["x-portkey-custom-host"] == "http://127.0.0.1:9/v1"
    cmd = peers.portkey_command("node", tmp_path / "l.mjs", tmp_path / "s.js", 5000)
    assert cmd[1:3] == ["--import", (tmp_path / "l.mjs").as_uri()]
    assert cmd[-2:] == ["--port=5000", "--headless"]


def test_missing_environments_are_unavailable_with_the_command_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(scenarios.Unavailable, match=r"pip install 'litellm\[proxy\]==1.106.2'"):
        peers.ensure_litellm(tmp_path, install=False)
    if shutil.which("node") is None:
        with pytest.raises(scenarios.Unavailable, match="node is not installed"):
            peers.ensure_portkey(tmp_path, install=False)
    else:
        with pytest.raises(scenarios.Unavailable, match="npm install"):
            peers.ensure_portkey(tmp_path, install=False)
    assert not (tmp_path / "litellm").exists()  # nothing was installed


NODE_PROBE = """
import http from 'node:http';
const forms = [(s, cb) => s.listen(0, cb), (s, cb) => s.listen({port: 0}, cb), (s, cb) => s.listen(0, '0.0.0.0', cb)];
const out = [];
for (const form of forms) {
  const server = http.createServer();
  await new Promise((resolve) => form(server, resolve));
  out.push(server.address().address);
  await new Promise((resolve) => server.close(resolve));
}
console.log(JSON.stringify(out));
"""


def test_loopback_preload_forces_every_listen_onto_127_0_0_1(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "node is part of this machine kind (Portkey runs on it): install nodejs"
    preload = tmp_path / "loopback.mjs"
    preload.write_text(peers.LOOPBACK_PRELOAD)
    probe = tmp_path / "probe.mjs"
    probe.write_text(NODE_PROBE)
    done = subprocess.run([node, "--import", preload.as_uri(), str(probe)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["127.0.0.1", "127.0.0.1", "127.0.0.1"]


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:1F91 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
"""


def test_non_loopback_listeners_are_found_in_proc_net_tcp() -> None:
    assert peers.non_loopback_listeners(PROC_NET_TCP, 0x1F90) == []
    assert peers.non_loopback_listeners(PROC_NET_TCP, 0x1F91) == ["00000000"]  # 0.0.0.0, LISTEN
    assert peers.non_loopback_listeners(PROC_NET_TCP, 1) == []
    with socket.socket() as s:  # a real loopback listener, read from the real /proc
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert peers.listens_only_on_loopback(s.getsockname()[1])


def _result(rps32: float, rps128: float, p50_1: float, rss_kb: int = 50_000) -> dict[str, Any]:
    return {"available": True, "c32": {"rps": rps32, "latency_ms": {"p50": 1.0, "p99": 2.0}},
            "c128": {"rps": rps128, "latency_ms": {"p50": 3.0, "p99": 9.0}}, "one_conn": {"p50": p50_1, "p99": 1.0},
            "stream": {"first_chunk": {"p50": 0.5}, "done": {"p50": 1.0}}, "memory": {"rss_kb": rss_kb},
            "cpu_ms_per_req": 0.2}


def test_headline_prefers_the_full_path_and_checks_issue_8_targets() -> None:
    results = {
        "direct": _result(10_000, 9_000, 0.1),
        "gateway": _result(5_000, 4_000, 0.4),
        "fullpath": _result(2_000, 3_000, 1.0),
        "litellm": _result(80, 50, 10.0, rss_kb=400_000),
        "portkey": {"available": False, "reason": "npm install failed"},
    }
    head = comparison.headline(results)
    assert head["ours"] == "fullpath"
    assert head["rps_c32_vs_litellm"] == 25.0
    assert head["rps_c128_vs_litellm"] == 60.0
    assert head["rps_c32_vs_portkey"] is None
    assert head["added_p50_1conn_ms_vs_direct"] == 0.9
    assert set(head["pairs"]) == {"fullpath_vs_litellm", "gateway_vs_litellm"}
    assert head["pairs"]["fullpath_vs_litellm"]["peer_rss_x"] == 8.0
    assert head["pairs"]["fullpath_vs_litellm"]["peer_p50_1conn_x"] == 10.0
    status = {c["key"]: c["status"] for c in comparison.check(head)}
    assert status == {"rps_c32_vs_litellm": "pass", "rps_c128_vs_litellm": "pass",
                      "rps_c32_vs_portkey": "not measured", "rps_c128_vs_portkey": "not measured",
                      "added_p50_1conn_ms_vs_direct": "FAIL"}
    text = comparison.peers_text(head, comparison.check(head))
    assert "[FAIL] ours adds <= 0.8 ms" in text
    assert "fullpath_vs_litellm: rps_c32=25.00" in text


def test_without_our_gateway_nothing_passes() -> None:
    head = comparison.headline({"litellm": _result(80, 50, 10.0), "direct": _result(1, 1, 0.1)})
    assert head["ours"] is None
    assert {c["status"] for c in comparison.check(head)} == {"not measured"}
    # the pass-through stands in when the full path did not run
    head = comparison.headline({"gateway": _result(4_000, 4_000, 0.3), "litellm": _result(100, 100, 10.0),
                                "fullpath": {"available": False, "reason": "no PostgreSQL"}})
    assert head["ours"] == "gateway"
    assert head["rps_c32_vs_litellm"] == 40.0


def test_venvs_dir_ignores_itself(tmp_path: Path) -> None:
    venvs = tmp_path / "a" / ".venvs"
    peers.prepare_venvs_dir(venvs)
    lines = (venvs / ".gitignore").read_text().splitlines()
    assert lines[-1] == "*"  # everything inside, the .gitignore included: nothing is ever committed
    (venvs / ".gitignore").write_text("*\n# kept\n")
    peers.prepare_venvs_dir(venvs)  # idempotent: an existing file is left alone
    assert (venvs / ".gitignore").read_text() == "*\n# kept\n"
