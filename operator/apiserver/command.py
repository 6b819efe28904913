"""``newapi apiserver``: serve the local API server alone, with the product's CRDs, until stopped."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from .server import LocalAPIServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="TCP port to listen on (default: 0 = a free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the server to this file")
    parser.add_argument("--crd", type=Path, action="append", default=[], metavar="PATH",
                        help="extra CRD manifest file or directory of *.yaml to register (repeatable)")


def _load_crds(paths: list[Path]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in paths:
        files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
        for file in files:
            out += [doc for doc in yaml.safe_load_all(file.read_text()) if isinstance(doc, dict)]
    return out


async def serve(args: argparse.Namespace) -> int:
    from ..crdgen import build_crds

    crds = build_crds() + _load_crds(args.crd)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with LocalAPIServer(crds=crds, host=args.host, port=args.port) as server:
        message = f"newapi apiserver: serving the Kubernetes API at {server.url}"
        if args.kubeconfig:
            server.write_kubeconfig(args.kubeconfig)
            message += f"; kubeconfig: {args.kubeconfig} (export KUBECONFIG={args.kubeconfig})"
        print(message, flush=True)
        await stop.wait()
    print("newapi apiserver: stopped", flush=True)
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(serve(args))
    except (OSError, ValueError) as exc:
        print(f"newapi apiserver: {exc}", file=sys.stderr)
        return 1
