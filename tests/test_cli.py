"""The ``newapi`` command: every subcommand is wired and documents itself."""

from __future__ import annotations

import subprocess

import pytest

from newapi_operator.cli import build_parser

SUBCOMMANDS = {
    name: action.get_default("func")
    for name, action in build_parser()._subparsers._group_actions[0].choices.items()  # type: ignore[union-attr]
}


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_each_subcommand_has_help(command: str, newapi_bin: str) -> None:
    result = subprocess.run([newapi_bin, command, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: newapi" in result.stdout
