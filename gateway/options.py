"""The ``newapi gateway`` command-line options (kept free of heavy imports: the CLI builds every parser)."""

from __future__ import annotations

import argparse
import os


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``newapi gateway`` options (the CLI only wires them; see docs/gateway.md)."""
    p.add_argument("--routes", metavar="FILE", help="routing table JSON file (standalone); reloaded on change")
    p.add_argument("--upstream-credentials", metavar="FILE",
                   help='JSON {"<credential name>": "<key>"} (standalone); reloaded on change')
    p.add_argument("--keys", metavar="FILE",
                   help="static customer key file, JSON or YAML: the pure pass-through mode WITHOUT a store "
                        "(no metering, no admin API); leave it out to use the store")
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
    state = p.add_argument_group("state (metering: keys, credit, limits; not with --keys)")
    state.add_argument("--database-url", metavar="URL",
                       help="postgresql://user:password@host:5432/db, or sqlite:///path/file.db; default: "
                            "$NEWAPI_DATABASE_URL, else $SQL_DSN, else the SQLite file <state dir>/newapi.db")
    state.add_argument("--redis-url", metavar="URL",
                       help="redis://host:6379/0 (rate limits and key invalidation shared by replicas); default: "
                            "$NEWAPI_REDIS_URL, else $VALKEY_URL, else in-process (one replica only)")
    state.add_argument("--state-dir", metavar="DIR", default=os.environ.get("NEWAPI_STATE_DIR", "."),
                       help="directory of the embedded SQLite file (default $NEWAPI_STATE_DIR or the working dir)")
    state.add_argument("--hold-ttl", type=float, default=600.0, metavar="SECONDS",
                       help="lifetime of a request's credit hold; holds of a crashed gateway are released after it "
                            "(default 600; keep it above the longest request)")
    state.add_argument("--default-max-tokens", type=int, default=4096, metavar="N",
                       help="output tokens held for a request that sets no max_tokens (default 4096)")
    admin = p.add_argument_group("admin API (its own listener; never on the customer port)")
    admin.add_argument("--admin-port", type=int, metavar="PORT",
                       help="serve the admin API (/api/v1/admin/) on this port; absent = no admin API")
    admin.add_argument("--admin-host", metavar="HOST", help="admin listen address (default: --host)")
    admin.add_argument("--admin-token-file", metavar="FILE",
                       help="file holding the admin bearer token (re-read on change); default $NEWAPI_ADMIN_TOKEN")
    compliance = p.add_argument_group("compliance (docs/compliance.md)")
    compliance.add_argument("--geoip-db", metavar="FILE",
                            help="MaxMind-format GeoIP database (City level for subdivisions) used when the routing "
                                 "table's geo.geoipDatabase is not set")
    compliance.add_argument("--audit-retention-interval", type=float, default=3600.0, metavar="SECONDS",
                            help="seconds between two runs of the audit retention job (default 3600)")
