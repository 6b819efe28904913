"""Port checks, child processes (process groups, SIGTERM then SIGKILL, dying with the parent)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from newapi_operator.dev.ports import PortUse, check_ports, free_port
from newapi_operator.dev.processes import Child, tail


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_taken_port_is_named_with_its_option() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        free = free_port()
        problem = check_ports([PortUse(free, "--apiserver-port", "the API server"),
                               PortUse(taken, "--gateway-port", "the customer API")])
    assert problem == (f"port {taken} (the customer API) is already in use on 127.0.0.1; stop what listens there "
                       "or choose another with --gateway-port PORT")
    assert check_ports([PortUse(free, "--a", "a")]) is None


def test_the_same_port_twice_and_impossible_ports() -> None:
    assert check_ports([PortUse(9000, "--a", "a"), PortUse(9000, "--b", "b")]) == (
        "--b and --a are both 9000; give each its own port")
    assert check_ports([PortUse(0, "--a", "a")]) == "--a 0: not a TCP port (1-65535)"


async def test_stop_sends_sigterm_to_the_group_then_sigkill(tmp_path: Path) -> None:
    # A process that ignores SIGTERM, with a grandchild in its group.
    script = textwrap.dedent("""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("pid-of-" + "grandchild:", p.pid, flush=True)
        time.sleep(60)
    """)
    child = Child("stubborn", [sys.executable, "-c", script], log_path=tmp_path / "stubborn.log")
    await child.start()
    assert child.pid is not None
    for _ in range(200):
        if "pid-of-grandchild:" in tail(tmp_path / "stubborn.log"):
            break
        await asyncio.sleep(0.02)
    grandchild = int(tail(tmp_path / "stubborn.log").split("pid-of-grandchild: ")[1].split()[0])
    assert os.getpgid(child.pid) == child.pid != os.getpgid(0)  # its own process group
    started = time.monotonic()
    code = await child.stop(grace=0.5)
    assert code == -signal.SIGKILL
    assert 0.4 < time.monotonic() - started < 5
    for _ in range(100):
        if not alive(grandchild):
            break
        await asyncio.sleep(0.02)
    assert not alive(grandchild), "the grandchild in the group was not killed"
    assert tail(tmp_path / "stubborn.log").startswith("--- newapi dev: starting stubborn:")


async def test_a_polite_child_exits_on_sigterm(tmp_path: Path) -> None:
    child = Child("polite", [sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "p.log")
    await child.start()
    assert child.running
    assert await child.stop(grace=10) == -signal.SIGTERM
    assert not child.running


def test_children_die_when_newapi_dev_is_killed(tmp_path: Path) -> None:
    """Even a SIGKILL of the parent leaves no child running (PR_SET_PDEATHSIG through childexec)."""
    parent = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from newapi_operator.dev.processes import Child
        async def main():
            c = Child("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                      log_path=Path({str(tmp_path / "s.log")!r}))
            await c.start()
            print(c.pid, flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        child_pid = int(proc.stdout.readline())
        assert alive(child_pid)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child_pid), "the child outlived a SIGKILLed parent"
