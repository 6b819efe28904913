"""The ``newapi dev`` command-line options (no heavy imports: the CLI builds every parser)."""

from __future__ import annotations

import argparse

#: Default ports, all on 127.0.0.1.
DEFAULT_APISERVER_PORT = 8001
DEFAULT_GATEWAY_PORT = 8080
DEFAULT_ADMIN_PORT = 8081
DEFAULT_DEMO_UPSTREAM_PORT = 8090


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``newapi dev`` (see the README's "Run it locally")."""
    p.add_argument("--state-dir", default=".dev", metavar="DIR",
                   help="where the API server's objects, the gateway's SQLite file, the kubeconfig, the admin "
                        "token and the logs are kept between runs (default .dev)")
    p.add_argument("--apply", action="append", default=[], metavar="DIR",
                   help="YAML directory or file to apply at start (repeatable; default config/samples; "
                        "kustomization files are skipped)")
    p.add_argument("--no-apply", action="store_true",
                   help="apply nothing at start: run with the objects kept in the state directory")
    p.add_argument("--apiserver-port", type=int, default=DEFAULT_APISERVER_PORT, metavar="PORT",
                   help=f"local Kubernetes API server, plain HTTP (default {DEFAULT_APISERVER_PORT})")
    p.add_argument("--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT, metavar="PORT",
                   help=f"customer API of the sample instance's gateway (default {DEFAULT_GATEWAY_PORT})")
    p.add_argument("--admin-port", type=int, default=DEFAULT_ADMIN_PORT, metavar="PORT",
                   help=f"admin API of the sample instance's gateway (default {DEFAULT_ADMIN_PORT})")
    p.add_argument("--demo-upstream-port", type=int, default=DEFAULT_DEMO_UPSTREAM_PORT, metavar="PORT",
                   help=f"the demo upstream (default {DEFAULT_DEMO_UPSTREAM_PORT})")
    p.add_argument("--no-demo-upstream", action="store_true",
                   help="no demo upstream: the samples' channels keep their real endpoints and keys")
    p.add_argument("--database-url", metavar="URL",
                   help="PostgreSQL for the gateways (postgresql://...); default: an SQLite file in the state dir")
    p.add_argument("--redis-url", metavar="URL",
                   help="Redis/Valkey for the gateways' limits (redis://...); default: in-process limits")
