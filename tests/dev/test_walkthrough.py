"""The README's walkthrough, run as written against a real ``newapi dev``.

The blocks are the README's ```` ```sh walkthrough id=NAME ```` fences, run in order in ONE bash
process (so ``export KEY=...`` carries over, as in a terminal), with ``set -euo pipefail``, from
a fresh directory where ``newapi dev`` (the ```` ```sh walkthrough-server ```` block, with free
ports added) keeps its state in ``.dev/``. Every block must have a check below, and every check
a block: a command added to the README without a check fails this test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import DevPorts, DevRun

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```sh walkthrough(?:-server| id=(?P<id>[\w-]+))\n(?P<body>.*?)^```$", re.M | re.S)
MARK = "=== walkthrough block "


def blocks(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The server command and the (id, body) of each client block, in README order."""
    server = ""
    client: list[tuple[str, str]] = []
    for m in FENCE.finditer(text):
        if m.group("id") is None:
            server = m.group("body").strip()
        else:
            client.append((m.group("id"), m.group("body")))
    return server, client


def first_json(text: str) -> dict[str, object]:
    """The first JSON object of a block's output (one per line)."""
    for line in text.splitlines():
        if line.startswith("{"):
            doc: dict[str, object] = json.loads(line)
            return doc
    raise AssertionError(f"no JSON object in:\n{text}")


def quota_balance(text: str) -> int:
    credit = first_json(text)["credit"]
    assert isinstance(credit, dict)
    return int(credit["balance"])


GRANT = 2_000_000
Outputs = dict[str, str]


def check_list(out: Outputs) -> None:
    for line in ("newapiinstance.newapi.openova.io/newapi", "channel.newapi.openova.io/qwen-vllm",
                 "channel.newapi.openova.io/anthropic-haiku", "customerkey.newapi.openova.io/customer-3f2b9c1e"):
        assert line in out["list"]


def check_chat(out: Outputs) -> None:
    doc = first_json(out["chat"])
    assert doc["object"] == "chat.completion"
    assert doc["choices"][0]["message"]["content"] == "echo: Hello from the walkthrough"  # type: ignore[index]


def check_create(out: Outputs) -> None:
    for line in ("secret/claude-demo-key created", "channel.newapi.openova.io/claude-demo created",
                 "customerkey.newapi.openova.io/walkthrough created",
                 "customerkey.newapi.openova.io/walkthrough condition met"):
        assert line in out["create"]
    assert first_json(out["create"])["tier"] == "enterprise"
    assert quota_balance(out["create"]) == GRANT


def check_messages(out: Outputs) -> None:
    doc = first_json(out["messages"])
    assert doc["type"] == "message"
    assert doc["model"] == "claude-sonnet-4-20250514"
    assert doc["content"] == [{"type": "text", "text": "echo: Hello Claude"}]


def check_openai_sdk(out: Outputs) -> None:
    lines = out["openai-sdk"].splitlines()
    assert "echo: Hello from the OpenAI SDK" in lines
    assert "echo: Streaming works too" in lines


def check_balance(out: Outputs) -> None:
    balance = quota_balance(out["balance"])
    assert 0 < balance < GRANT, f"the balance did not drop: {balance}"


def check_sanctioned(out: Outputs) -> None:
    text = out["sanctioned"]
    assert text.rstrip().endswith("HTTP 451"), text
    error = first_json(text)["error"]
    assert isinstance(error, dict)
    assert "IR" in str(error.get("message")), error


def check_metrics(out: Outputs) -> None:
    text = out["metrics"]
    assert 'gateway_requests_total{tier="enterprise",model="claude-sonnet-4",channel="claude-demo",code="200"}' in text
    assert 'gateway_requests_total{tier="pro",model="qwen3-32b",channel="qwen-vllm",code="200"} 1' in text


def check_admin(out: Outputs) -> None:
    entries = first_json(out["admin"])["data"]
    assert isinstance(entries, list)
    assert entries[0]["kind"] == "debit"
    # The debit that left the balance the "balance" block showed is among the newest entries.
    assert any(e["kind"] == "debit" and e["balanceAfter"] == quota_balance(out["balance"]) for e in entries), entries


def check_revoke(out: Outputs) -> None:
    assert 'customerkey.newapi.openova.io "walkthrough" deleted' in out["revoke"]
    assert out["revoke"].rstrip().endswith("HTTP 401")


CHECKS: dict[str, Callable[[Outputs], None]] = {
    "list": check_list,
    "chat": check_chat,
    "create": check_create,
    "messages": check_messages,
    "openai-sdk": check_openai_sdk,
    "balance": check_balance,
    "sanctioned": check_sanctioned,
    "metrics": check_metrics,
    "admin": check_admin,
    "revoke": check_revoke,
}


def test_every_walkthrough_block_has_a_check() -> None:
    server, client = blocks(README.read_text())
    assert server == "newapi dev"
    assert [i for i, _ in client] == list(CHECKS)


@dataclass
class Walkthrough:
    outputs: Outputs
    returncode: int
    report: str


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walkthrough]:
    """The README's client blocks, run once in one bash against a fresh ``newapi dev``."""
    server, client = blocks(README.read_text())
    assert server == "newapi dev", "the walkthrough starts with plain `newapi dev`"
    cwd = tmp_path_factory.mktemp("walkthrough")
    run = DevRun(cwd, cwd / ".dev", DevPorts.free())  # the default state dir, relative to the cwd
    try:
        run.start()
        run.sample_key()  # printed once everything is ready
        script = ["set -euo pipefail"]
        for ident, body in client:
            script += [f"printf '\\n{MARK}{ident}\\n'", body]  # the previous output may lack a newline
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        result = subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=180)
        outputs: Outputs = {}
        current = None
        for line in result.stdout.splitlines():
            if line.startswith(MARK):
                current = line[len(MARK):]
                outputs[current] = ""
            elif current is not None:
                outputs[current] += line + "\n"
        report = (f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\n--- newapi dev:\n{run.output}\n"
                  f"{run.logs()}")
        yield Walkthrough(outputs, result.returncode, report)
        assert run.stop() == 0, run.output
    finally:
        run.kill_everything()


def test_the_walkthrough_runs_to_the_end(walkthrough: Walkthrough) -> None:
    ran = list(walkthrough.outputs)
    if walkthrough.returncode != 0:
        pytest.fail(f"the walkthrough failed in block {ran[-1] if ran else '?'} (exit {walkthrough.returncode}):\n"
                    f"{walkthrough.report}")
    assert ran == list(CHECKS)


@pytest.mark.parametrize("ident", list(CHECKS))
def test_walkthrough_block(walkthrough: Walkthrough, ident: str) -> None:
    if ident not in walkthrough.outputs:
        pytest.fail(f"block {ident!r} did not run:\n{walkthrough.report}")
    try:
        CHECKS[ident](walkthrough.outputs)
    except AssertionError as exc:
        raise AssertionError(f"walkthrough block {ident!r}: {exc}\noutput:\n{walkthrough.outputs[ident]}") from exc
