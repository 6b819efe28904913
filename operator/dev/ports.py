"""Port checks for ``newapi dev``: every listening port is checked before anything starts."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

HOST = "127.0.0.1"


@dataclass(frozen=True)
class PortUse:
    """One port ``newapi dev`` will listen on: the port, the option that sets it, what it serves."""

    port: int
    option: str
    what: str


def port_problem(use: PortUse, host: str = HOST) -> str | None:
    """Why ``use.port`` cannot be listened on at ``host`` (one line), or None when it is free."""
    if not 1 <= use.port <= 65535:
        return f"{use.option} {use.port}: not a TCP port (1-65535)"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: SO_REUSEADDR, so a port in TIME_WAIT after a previous run is not "taken".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, use.port))
            sock.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {use.port} ({use.what}) is already in use on {host}; stop what listens there "
                        f"or choose another with {use.option} PORT")
            return (f"port {use.port} ({use.what}) cannot be used on {host}: {exc.strerror}; "
                    f"choose another with {use.option}")
    return None


def duplicate_problem(uses: list[PortUse]) -> str | None:
    """Two options naming the same port (one line), or None."""
    seen: dict[int, PortUse] = {}
    for use in uses:
        other = seen.get(use.port)
        if other is not None:
            return f"{use.option} and {other.option} are both {use.port}; give each its own port"
        seen[use.port] = use
    return None


def check_ports(uses: list[PortUse], host: str = HOST) -> str | None:
    """The first problem with the planned ports (one line), or None when all are free."""
    problem = duplicate_problem(uses)
    if problem:
        return problem
    for use in uses:
        problem = port_problem(use, host)
        if problem:
            return problem
    return None


def free_port(host: str = HOST) -> int:
    """A port that was free a moment ago (for gateways beyond the sample instance's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
