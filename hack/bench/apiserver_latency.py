"""Request latency of the local API server: the first 100 requests vs 100 after 10,000.

kmock 0.8 re-scanned its whole request log on every request (a GET took ~10 ms after 200
requests and ~94 ms after 1,000); the local API server must stay flat. Acceptance: the
median latency after 10,000 requests is within 1.5x of the first 100.

    .venv/bin/python hack/bench/apiserver_latency.py [--requests 10000] [--sample 100]

The server runs in a background thread (``ThreadedAPIServer``); a keep-alive HTTP client
drives it. Prints the medians and the ratio; exits 1 when the ratio exceeds 1.5.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import httpx

from newapi_operator.apiserver import ThreadedAPIServer

CM = "/api/v1/namespaces/default/configmaps"


def timed(calls: int, request: Callable[[], httpx.Response]) -> list[float]:
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        response = request()
        out.append(time.perf_counter() - start)
        response.raise_for_status()
    return out


def measure(total: int, sample: int) -> tuple[float, float]:
    """Median GET latency (seconds) of the first ``sample`` requests and of ``sample`` after ``total``."""
    with ThreadedAPIServer() as server, httpx.Client(base_url=server.url) as client:
        client.post(
            CM, json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench"}, "data": {"n": "0"}}
        ).raise_for_status()

        def get() -> httpx.Response:
            return client.get(f"{CM}/bench")

        timed(10, get)  # warm-up (connection, code paths)
        first = statistics.median(timed(sample, get))
        done = 10 + sample
        n = 0
        while done < total:
            n += 1
            client.patch(
                f"{CM}/bench", json={"data": {"n": str(n)}}, headers={"Content-Type": "application/merge-patch+json"}
            ).raise_for_status()
            client.get(CM, params={"labelSelector": "app!=x"}).raise_for_status()
            get().raise_for_status()
            done += 3
        after = statistics.median(timed(sample, get))
    return first, after


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests to serve before the second sample")
    parser.add_argument("--sample", type=int, default=100, help="requests per timed sample")
    parser.add_argument("--max-ratio", type=float, default=1.5, help="fail above this ratio")
    args = parser.parse_args(argv)
    first, after = measure(args.requests, args.sample)
    ratio = after / first
    print(
        f"median GET latency: first {args.sample}: {first * 1000:.3f} ms; "
        f"after {args.requests} requests: {after * 1000:.3f} ms; ratio {ratio:.2f} (max {args.max_ratio})"
    )
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
