"""The ``newapi`` command: subcommands whose issue has not landed say so and exit non-zero."""

from __future__ import annotations

import subprocess

import pytest

from newapi_operator.cli import build_parser

NOT_YET = {
    name: action.get_default("func")
    for name, action in build_parser()._subparsers._group_actions[0].choices.items()  # type: ignore[union-attr]
}


@pytest.mark.parametrize("command", sorted(NOT_YET))
def test_each_subcommand_has_help(command: str, newapi_bin: str) -> None:
    result = subprocess.run([newapi_bin, command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: newapi" in result.stdout


def test_unimplemented_subcommands_say_so(newapi_bin: str) -> None:
    stubs = [name for name, fn in NOT_YET.items() if getattr(fn, "__name__", "") == "handler"]
    for command in stubs:
        result = subprocess.run([newapi_bin, command], capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert "not implemented yet" in lines[0], result.stderr
