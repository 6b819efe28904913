"""``python -m newapi_operator.dev.childexec PARENT_PID PROGRAM ARGS...``: run PROGRAM so it dies with ``newapi dev``.

On Linux the process asks the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``,
kept across ``exec``), then replaces itself with PROGRAM. So even a ``kill -9`` of ``newapi dev``
leaves no gateway, operator or demo upstream running. Elsewhere it simply executes PROGRAM.
Kept free of imports beyond the standard library: it runs before every child.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except OSError:
        return


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m newapi_operator.dev.childexec PARENT_PID PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    _die_with_parent()
    if os.getppid() != int(argv[0]):
        return 1  # the parent is already gone
    os.execv(argv[1], argv[1:])  # noqa: S606 - argv from newapi dev itself, no shell involved
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
