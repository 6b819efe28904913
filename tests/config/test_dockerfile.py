"""The Dockerfile (docker cannot build on this machine): multi-stage, constraints, non-root, entrypoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # line continuations
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_multi_stage_build_uses_the_constraints() -> None:
    build, runtime = stages()
    assert re.search(r"\bAS build$", build[0][1])
    build_runs = " ".join(rest for word, rest in build if word == "RUN")
    assert "pip wheel" in build_runs
    assert "--constraint constraints.txt" in build_runs
    copied = " ".join(rest for word, rest in build if word == "COPY")
    for needed in ("pyproject.toml", "setup.py", "hack/mypyc.ini", "constraints.txt", "operator/", "gateway/"):
        assert needed in copied
    assert any(word == "COPY" and rest.startswith("--from=build ") for word, rest in runtime)


def test_runtime_runs_as_non_root_newapi() -> None:
    runtime = stages()[-1]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "use a numeric USER so runAsNonRoot can verify it"
    [entrypoint] = [rest for word, rest in runtime if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["newapi"]
    [cmd] = [rest for word, rest in runtime if word == "CMD"]
    assert json.loads(cmd) in (["operator"], ["gateway"])


def test_manager_runs_the_image_as_its_user() -> None:
    user = [rest for word, rest in stages()[-1] if word == "USER"][-1]
    deployment = (ROOT / "config/manager/deployment.yaml").read_text()
    assert f"runAsUser: {user.split(':')[0]}" in deployment


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    assert not any(line.startswith("!") and ".venv" in line for line in lines)
    for needed in ("pyproject.toml", "setup.py", "hack/mypyc.ini", "constraints.txt", "README.md"):
        assert f"!{needed}" in lines, f"the build stage copies {needed}: let it into the context"
