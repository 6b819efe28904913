"""The ``newapi gateway`` command-line options (kept free of heavy imports: the CLI builds every parser)."""

from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``newapi gateway`` options (the CLI only wires them; see docs/gateway.md)."""
    p.add_argument("--routes", metavar="FILE", help="routing table JSON file (standalone); reloaded on change")
    p.add_argument("--upstream-credentials", metavar="FILE",
                   help='JSON {"<credential name>": "<key>"} (standalone); reloaded on change')
    p.add_argument("--keys", metavar="FILE", help="static customer key file, JSON or YAML (standalone key check)")
    p.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="listen port (default 8080; 0 = any free port)")
    p.add_argument("--kube", action="store_true",
                   help="read the routing table and credentials from the Kubernetes API (ConfigMap <instance>-routes, "
                        "Secret <instance>-upstream); in-cluster config or --kubeconfig/KUBECONFIG")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig for --kube outside a cluster")
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "default"), help="namespace (with --kube)")
    p.add_argument("--instance", help="NewAPIInstance name (with --kube)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="json", choices=["json", "text"])
    p.add_argument("--otel-exporter", default="none", choices=["none", "console"],
                   help="OpenTelemetry span exporter (default none: tracing off)")
    p.add_argument("--upstream-client", default="lean", choices=["lean", "aiohttp"],
                   help="upstream HTTP client: lean (built-in HTTP/1.1, default) or aiohttp")
    p.add_argument("--reload-interval", type=float, default=1.0, help="seconds between file change checks")
