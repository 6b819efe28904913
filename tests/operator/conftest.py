"""Fixtures for the operator tests: the generated CRDs, the fixture objects, an API-server-like check."""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from newapi_operator import crdgen

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"


def load_crd_check() -> ModuleType:
    """tests/operator/crd_check.py, loaded by path (tests are not a package)."""
    spec = importlib.util.spec_from_file_location("newapi_tests_crd_check", HERE / "crd_check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_valid_objects() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) for p in sorted((FIXTURES / "valid").glob("*.yaml"))}


def _set(obj: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = copy.deepcopy(value)


def _unset(obj: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    node = obj
    for part in parents:
        node = node[part]
    del node[last]


def build_object(valid: Mapping[str, dict[str, Any]], ref: Mapping[str, Any]) -> dict[str, Any]:
    """A fixture object: ``{object: <valid name>, set: {dotted: value}, unset: [dotted]}``."""
    obj = copy.deepcopy(valid[ref["object"]])
    for dotted, value in (ref.get("set") or {}).items():
        _set(obj, dotted, value)
    for dotted in ref.get("unset") or []:
        _unset(obj, dotted)
    return obj


@pytest.fixture(scope="session")
def crds() -> dict[str, dict[str, Any]]:
    """The generated CRDs by kind."""
    return {crd["spec"]["names"]["kind"]: crd for crd in crdgen.build_crds()}


@pytest.fixture(scope="session")
def crd_check() -> ModuleType:
    return load_crd_check()


@pytest.fixture
def valid_objects() -> dict[str, dict[str, Any]]:
    """The valid fixtures by file stem (fresh copies)."""
    return load_valid_objects()


@pytest.fixture
def make_object(valid_objects: dict[str, dict[str, Any]]) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    return lambda ref: build_object(valid_objects, ref)
