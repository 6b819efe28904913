"""Channel apply -> routable: reuses hack/bench/operator_bench.py's measurement.

A Channel is created on the local API server; the time until the instance's routing ConfigMap
holds it (watched) is what a gateway needs to route it (the gateway reloads the ConfigMap on the
watch event). ``runs`` channels one after another; p50 / p95 / max in ms. The peer this compares
with (a gateway that polls its database/config for new models every 5 s) needs 2.5 s on average
and up to 5 s: :data:`PEER_POLL_S` is that reference, not a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

#: The polling period of a peer that discovers new models by polling (reference, not measured).
PEER_POLL_S = 5.0


def run_routable(runs: int = 50) -> dict[str, Any]:
    """Start the local API server and the operator, time ``runs`` Channel applies, stop them."""
    bench_dir = str(Path(__file__).resolve().parent.parent)
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    import operator_bench

    args = argparse.Namespace(runs=runs, keys=0, admin_url=None, gateway_cmd=operator_bench.DEFAULT_GATEWAY_CMD)
    try:
        results: dict[str, Any] = asyncio.run(operator_bench.main(args))
    except SystemExit as exc:  # operator_bench reports its failures as SystemExit("why")
        raise RuntimeError(f"operator benchmark failed: {exc}") from None
    workdir = results.pop("workdir", None)
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    latency = results["channel_to_configmap"]
    return {
        **latency,
        "peer_poll_s": PEER_POLL_S,
        "peer_mean_ms": PEER_POLL_S * 1000 / 2,
        "operator_peak_rss_mib": results.get("operator_peak_rss_mib"),
        "cpu": results.get("cpu"),
    }
