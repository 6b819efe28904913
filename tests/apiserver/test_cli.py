"""``newapi apiserver --port PORT --kubeconfig FILE``: serves with the product's CRDs until SIGTERM/Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from newapi_operator.api.v1alpha1 import KINDS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_newapi_apiserver_serves_crds_until_stopped(newapi_bin: str, tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen([newapi_bin, "apiserver", "--port", str(port), "--kubeconfig", str(kubeconfig)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner, banner + (proc.stderr.read() if proc.stderr else "")
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == f"http://127.0.0.1:{port}"
        crds = httpx.get(f"http://127.0.0.1:{port}/apis/apiextensions.k8s.io/v1/customresourcedefinitions").json()
        names = {item["metadata"]["name"] for item in crds["items"]}
        assert {f"{k.info.plural}.newapi.openova.io" for k in KINDS} <= names
        discovery = httpx.get(f"http://127.0.0.1:{port}/apis/newapi.openova.io/v1alpha1").json()
        assert {r["name"] for r in discovery["resources"]} >= {k.info.plural for k in KINDS}
        proc.send_signal(stop)
        started = time.monotonic()
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_port_in_use_fails_with_a_message(newapi_bin: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run([newapi_bin, "apiserver", "--port", str(port)], capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 1
    assert "newapi apiserver:" in result.stderr
