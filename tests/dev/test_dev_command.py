"""``newapi dev`` end to end: the 30-second acceptance, Ctrl-C, a second run over kept state, port errors.

The first run starts from a clean state directory exactly as a newcomer would (only the ports
differ, so parallel test runs do not collide) and is shared by the tests of this module.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from .conftest import NEWAPI, DevPorts, DevRun, alive, balance, chat, cmdline

#: The acceptance bound: from process start to a working chat completion with the sample key.
ACCEPTANCE_SECONDS = 30.0
SAMPLE_CUSTOMER = "3f2b9c1e-7d4a-4c1b-9e55-2a6f0c8d1b47"


@dataclass
class FirstRun:
    run: DevRun
    key: str
    elapsed: float
    answer: str
    children: dict[int, str]
    balance: int
    exit_code: int
    survivors: list[int]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    cwd = tmp_path_factory.mktemp("dev-first")
    run = DevRun(cwd, cwd / ".dev", DevPorts.free()).start()
    try:
        key = run.sample_key()
        url = f"http://127.0.0.1:{run.ports.gateway}"
        answer = ""
        while time.monotonic() - run.started < 90:
            rsp = chat(url, key, "hello from the acceptance test")
            if rsp.status_code == 200:
                answer = rsp.json()["choices"][0]["message"]["content"]
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - run.started
        children = {pid: cmdline(pid) for pid in run.children()}
        final_balance = balance(url, key)
        deadline = time.monotonic() + 10
        while final_balance == 5_000_000 and time.monotonic() < deadline:  # settling follows the answer
            time.sleep(0.05)
            final_balance = balance(url, key)
        code = run.stop(signal.SIGINT)
        deadline = time.monotonic() + 5
        while any(alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield FirstRun(run, key, elapsed, answer, children, final_balance, code,
                       [p for p in children if alive(p)])
    finally:
        run.kill_everything()


def test_a_clean_start_serves_a_chat_completion_with_the_sample_key_within_30_seconds(first_run: FirstRun) -> None:
    print(f"time to first completion: {first_run.elapsed:.1f} s")
    assert first_run.answer == "echo: hello from the acceptance test", first_run.run.output
    assert first_run.balance < 5_000_000  # the sample grant, minus what the completion cost
    assert first_run.elapsed <= ACCEPTANCE_SECONDS, (
        f"first completion after {first_run.elapsed:.1f} s\n{first_run.run.output}")
    out = first_run.run.output
    assert "demo upstream (NOT a real model" in out
    assert f"customer API   http://127.0.0.1:{first_run.run.ports.gateway}/v1" in out
    assert f"admin API      http://127.0.0.1:{first_run.run.ports.admin}/api/v1/admin" in out
    assert "Channel default/qwen-vllm: spec.endpoint http://vllm.vllm.svc:8000/v1 -> " in out


def test_ctrl_c_stops_every_child_and_keeps_the_state(first_run: FirstRun) -> None:
    kinds = " | ".join(first_run.children.values())
    assert "operator --kubeconfig" in kinds, first_run.children
    assert "newapi_gateway.demo_upstream" in kinds, first_run.children
    assert " gateway --kube " in kinds, first_run.children
    assert first_run.exit_code == 0, first_run.run.output
    assert first_run.survivors == [], f"still running after Ctrl-C: {first_run.survivors}"
    assert "stopped; state kept in" in first_run.run.output
    state = first_run.run.state_dir
    for name in ("apiserver.json", "kubeconfig", "admin-token", "env"):
        assert (state / name).is_file(), name
    assert (state / "gateways" / "default" / "newapi" / "volumes" / "state" / "newapi.db").is_file()
    assert len((state / "admin-token").read_text().strip()) >= 16
    assert f"NEWAPI_KEY='{first_run.key}'" in (state / "env").read_text()


def test_a_second_run_reuses_the_state(first_run: FirstRun, dev_runs: list[DevRun]) -> None:
    # New ports on purpose: the kept objects are re-pointed (samples re-applied), the key stays.
    run = DevRun(first_run.run.cwd, first_run.run.state_dir, DevPorts.free())
    dev_runs.append(run.start())
    assert run.sample_key() == first_run.key
    run.wait_for(r"restored \d+ objects of the previous run")
    url = f"http://127.0.0.1:{run.ports.gateway}"
    assert balance(url, first_run.key) == first_run.balance  # no second credit grant, the spend kept
    rsp = chat(url, first_run.key, "hello again")
    assert rsp.status_code == 200, rsp.text
    deadline = time.monotonic() + 10
    while balance(url, first_run.key) == first_run.balance and time.monotonic() < deadline:
        time.sleep(0.05)
    assert balance(url, first_run.key) < first_run.balance
    assert run.stop(signal.SIGTERM) == 0, run.output
    assert "pod template changed" not in run.output  # restored Deployments do not restart their gateway


def test_a_taken_port_is_a_one_line_error_before_anything_starts(tmp_path: Path) -> None:
    ports = DevPorts.free()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports.admin))
        taken.listen()
        result = subprocess.run([NEWAPI, "dev", "--state-dir", str(tmp_path / ".dev"), *ports.args()],
                                cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"newapi dev: port {ports.admin} (the admin API) is already in use on 127.0.0.1; stop "
                             "what listens there or choose another with --admin-port PORT\n")
    assert not (tmp_path / ".dev").exists()  # nothing was started or written


def test_one_state_directory_serves_one_newapi_dev(tmp_path: Path, dev_runs: list[DevRun]) -> None:
    run = DevRun(tmp_path, tmp_path / ".dev", DevPorts.free())
    dev_runs.append(run.start())
    run.wait_for("local Kubernetes API server at")
    result = subprocess.run([NEWAPI, "dev", "--state-dir", str(tmp_path / ".dev"), *DevPorts.free().args()],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "is using the state directory" in result.stderr
    assert run.stop() == 0


def test_postgresql_and_redis_replace_the_embedded_state(
        tmp_path: Path, pg_dsn: str, redis_url: str, dev_runs: list[DevRun]) -> None:
    run = DevRun(tmp_path, tmp_path / ".dev", DevPorts.free(), ["--database-url", pg_dsn, "--redis-url", redis_url])
    dev_runs.append(run.start())
    key = run.sample_key()
    url = f"http://127.0.0.1:{run.ports.gateway}"
    rsp = chat(url, key, "hello postgres")
    assert rsp.status_code == 200, rsp.text
    gateways = [cmdline(p) for p in run.children() if " gateway --kube " in cmdline(p)]
    assert len(gateways) == 1
    assert f"--database-url {pg_dsn}" in gateways[0]
    assert f"--redis-url {redis_url}" in gateways[0]
    assert not (tmp_path / ".dev" / "gateways" / "default" / "newapi" / "volumes" / "state" / "newapi.db").exists()
    # The customer, its credit and the spend are in PostgreSQL.
    async def pg_balance() -> int:
        conn = await asyncpg.connect(pg_dsn)
        try:
            value = await conn.fetchval("SELECT b.balance FROM balances b JOIN customers c ON c.id = b.customer_id "
                                        "WHERE c.external_id = $1", SAMPLE_CUSTOMER)
        finally:
            await conn.close()
        return int(value)

    deadline = time.monotonic() + 10
    while (spent := asyncio.run(pg_balance())) == 5_000_000 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 0 < spent < 5_000_000
    assert balance(url, key) == spent
    assert run.stop() == 0
