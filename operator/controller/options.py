"""The ``newapi operator`` command-line options (no heavy imports: the CLI builds every parser)."""

from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``newapi operator`` (see docs/operator.md)."""
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="serve this namespace (repeatable; globs such as 'team-*' need --standalone); "
                            "default: all namespaces")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve all namespaces (the default)")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="kubeconfig to use (default: in-cluster service account, else $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", metavar="URL",
                   help="liveness endpoint served by the operator (default http://0.0.0.0:8080/healthz; 'none': off)")
    p.add_argument("--peering", default="newapi-operator", metavar="NAME",
                   help="Kopf peering name: of the replicas in one peering only one acts (default newapi-operator)")
    p.add_argument("--standalone", action="store_true", help="no peering (one replica only)")
    p.add_argument("--priority", type=int, default=None,
                   help="peering priority (the highest live one acts; default: random, so one replica wins)")
    p.add_argument("--webhook-port", type=int, default=None, metavar="PORT",
                   help="serve the validating admission webhook on this port (default: no webhook)")
    p.add_argument("--webhook-tls-dir", metavar="DIR",
                   help="directory with tls.crt and tls.key for the webhook (default: plain HTTP behind a TLS proxy)")
    p.add_argument("--gateway-image", default=os.environ.get("NEWAPI_GATEWAY_IMAGE"), metavar="IMAGE",
                   help="gateway image when spec.image is unset (default $NEWAPI_GATEWAY_IMAGE, else the "
                        "operator's own release image)")
    p.add_argument("--admin-url", default=os.environ.get("NEWAPI_ADMIN_URL"), metavar="TEMPLATE",
                   help="base URL of the gateways' admin API, {namespace} and {name} substituted "
                        "(default http://{name}.{namespace}.svc:8081; override for development)")
    p.add_argument("--usage-refresh", type=float, default=300.0, metavar="SECONDS",
                   help="how often each CustomerKey's usage snapshot is refreshed (default 300)")
    p.add_argument("--log-format", default="json", choices=["json", "text"])
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
