"""Fixtures for the config/ tests: kubectl (required, never skipped) and built kustomize bases."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
BASES = ("crd", "rbac", "manager", "samples", "default")


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not on PATH: it is needed to build the kustomize bases (install kubectl >= 1.31)")
    return path


@pytest.fixture(scope="session")
def built(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    """`kubectl kustomize config/<base>` of every base, as lists of objects."""
    out = {}
    for base in BASES:
        result = subprocess.run(
            [kubectl, "kustomize", str(CONFIG / base)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"kubectl kustomize config/{base} failed: {result.stderr}"
        out[base] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


@pytest.fixture(scope="session")
def crd_check() -> ModuleType:
    """tests/operator/crd_check.py (an API-server-like CRD check), loaded by path."""
    spec = importlib.util.spec_from_file_location("newapi_tests_crd_check", ROOT / "tests/operator/crd_check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
