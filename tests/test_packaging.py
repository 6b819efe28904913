"""The distribution's shape: import names, the package list, the console script."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"newapi_operator": "operator", "newapi_gateway": "gateway"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    assert setuptools["package-dir"] == FOLDERS
    listed = set(setuptools["packages"])
    found = set()
    for name, folder in FOLDERS.items():
        found.add(name)  # newapi_operator is a namespace package: its folder has no __init__.py
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join((name, *rel.parts)) if rel.parts else name)
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "pyproject.toml lists packages that do not exist"


PROBE = "import operator, newapi_operator\nprint(operator.__file__)\nprint(list(newapi_operator.__path__)[0])"


def test_operator_folder_is_not_a_regular_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists(), (
        "operator/__init__.py would make the folder shadow the standard library's operator module "
        "whenever Python runs from the repository root; keep newapi_operator a namespace package"
    )


def test_no_package_shadows_the_standard_library() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    assert "site-packages" not in out[0], out
    assert out[0].endswith("operator.py"), out
    assert Path(out[1]).name in {"operator", "newapi_operator"}, out


def test_console_script_lists_every_subcommand(newapi_bin: str) -> None:
    out = subprocess.run([newapi_bin, "--help"], capture_output=True, text=True, check=True).stdout
    for sub in ("crds", "apiserver", "operator", "gateway", "dev", "compliance-check"):
        assert sub in out


def test_constraints_pin_every_dependency() -> None:
    pins = {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    project = _pyproject()["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    for req in reqs:
        name = req.split(";")[0]
        for sep in ("==", ">=", "<", "[", " "):
            name = name.split(sep)[0]
        assert name.strip().lower().replace("_", "-") in pins, f"{name} is not pinned in constraints.txt"


def _compiled_modules() -> list[str]:
    """setup.py's ``COMPILED`` (the modules mypyc compiles), read without running the build."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMPILED" for t in node.targets):
            return [f"newapi_gateway.{name.replace('/', '.')}" for name in ast.literal_eval(node.value)]
    raise AssertionError("setup.py defines no COMPILED tuple")


def test_an_installed_build_runs_the_compiled_metering_modules() -> None:
    """The test command installs the project (not editable): the metering hot path must be the mypyc
    build, or the benchmark figures in docs/metering.md do not hold. An editable install (the source
    folder) or ``NEWAPI_PURE_PYTHON=1`` runs the same modules interpreted."""
    import newapi_gateway

    from_source = Path(newapi_gateway.__file__).resolve().parent == ROOT / "gateway"
    expect_compiled = not from_source and os.environ.get("NEWAPI_PURE_PYTHON") != "1"
    modules = _compiled_modules()
    assert "newapi_gateway.metering.meter" in modules
    for name in modules:
        path = importlib.import_module(name).__file__ or ""
        assert path.endswith(".py") != expect_compiled, (name, path)
