"""Command line of the demo upstream process.

Prints one line ``demo-upstream NAME listening on http://HOST:PORT`` on stdout once it accepts
connections (with ``--port 0`` that line tells the chosen port), then serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from .behavior import BehaviorError, parse_spec
from .server import DemoUpstream, DemoUpstreamConfig


def _csv(values: Sequence[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ():
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m newapi_gateway.demo_upstream",
        description="Demo LLM upstream (NOT a real model): speaks the OpenAI and Anthropic wire formats, "
        "answers deterministically ('echo: <your words>'), for tests, benchmarks and `newapi dev`.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default 0: a free port, printed)")
    p.add_argument("--name", default="demo", help="instance name, in ids and the x-demo-upstream header")
    p.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="accepted API key (repeatable or comma-separated); without it any key is accepted",
    )
    p.add_argument(
        "--models",
        action="append",
        metavar="M1,M2",
        help="models served (others: 404 model_not_found); without it any model is accepted",
    )
    p.add_argument("--record", type=int, default=1000, help="request log size for /__demo/requests (0: off)")
    p.add_argument(
        "--behavior", default="", metavar="SPEC", help="behaviour for every request, e.g. 'chunk_delay_ms=20'"
    )
    return p


async def _run(config: DemoUpstreamConfig, host: str, port: int) -> None:
    upstream = DemoUpstream(config)
    try:
        bound = await upstream.start(host, port)
    except OSError as exc:
        print(
            f"demo-upstream: cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    shown = f"[{host}]" if ":" in host else host
    print(f"demo-upstream {config.name} listening on http://{shown}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await upstream.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parse_spec(args.behavior)
    except BehaviorError as exc:
        print(f"demo-upstream: --behavior: {exc}", file=sys.stderr)
        return 2
    config = DemoUpstreamConfig(
        name=args.name,
        api_keys=_csv(args.api_key),
        models=_csv(args.models),
        record=max(args.record, 0),
        behavior=args.behavior,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(_run(config, args.host, args.port))
    else:
        uvloop.run(_run(config, args.host, args.port))
    return 0
