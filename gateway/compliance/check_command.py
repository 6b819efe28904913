"""Command line of ``newapi compliance-check`` (the checks are in :mod:`.check`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from .check import DEFAULT_REGIONS, CheckConfig, exit_code, render_table, run_checks
from .retention_probe import InvalidMarker, check_marker

TOKEN_ENV = "NEWAPI_ADMIN_TOKEN"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Check a live stack's compliance controls (attestation, disclosure, sanctioned regions, BYOK isolation, "
        "audit log) from the outside and print a pass/fail table; exit 1 unless every control passed. The request "
        "checks mark the request's country with --country-header, which the gateway believes only from "
        "geo.trustedProxyCIDRs: run the check through the ingress or from a trusted address."
    )
    p.add_argument("--url", required=True, help="the gateway's customer URL, e.g. https://api.example.com")
    p.add_argument("--admin-url", required=True, help="the gateway's admin API URL (admin listener)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--admin-token", help=f"admin bearer token (default ${TOKEN_ENV})")
    token.add_argument("--admin-token-file", metavar="FILE", help="file holding the admin bearer token")
    p.add_argument("--key", help="a customer API key for the request checks (451 probe, BYOK probe); without it "
                                 "those checks are skipped (and the check fails)")
    p.add_argument("--kubeconfig", metavar="FILE", help="also check the Channel objects (conditions Attested/Valid)")
    p.add_argument("--namespace", default="default", help="namespace of the Channel objects (default: default)")
    p.add_argument("--country-header", default="CF-IPCountry",
                   help="header carrying the client country, as the ingress sets it (default CF-IPCountry)")
    regions = ",".join(DEFAULT_REGIONS)
    p.add_argument("--regions", default=regions,
                   help=f"comma-separated countries/subdivisions that must get 451 (default {regions})")
    p.add_argument("--probe-country", default="US",
                   help="country sent with the BYOK probe (an allowed one; default US)")
    p.add_argument("--model", help="model of a commercial channel for the 451 probe (default: from the routing table)")
    p.add_argument("--byok-model", help="model of a BYOK channel for the BYOK probe (default: from the routing table)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per HTTP request (default 20)")
    p.add_argument("--audit-wait", type=float, default=15.0,
                   help="seconds to wait for the probes' audit rows (default 15)")
    p.add_argument("--probe-marker", metavar="MARKER",
                   help="the BYOK probe key to send and search for (sk-probe-<16-128 letters, digits, - or _>); "
                        "default: a new random one per run")
    p.add_argument("--output", choices=["table", "json"], default="table", help="table (default) or json")


def _token(args: argparse.Namespace) -> str | None:
    if args.admin_token_file:
        try:
            with open(args.admin_token_file, encoding="utf-8") as f:
                return f.read().strip() or None
        except OSError as err:
            print(f"newapi compliance-check: cannot read {args.admin_token_file}: {err.strerror}", file=sys.stderr)
            return None
    return args.admin_token or os.environ.get(TOKEN_ENV) or None


def config_from_args(args: argparse.Namespace, token: str) -> CheckConfig:
    return CheckConfig(
        url=args.url.rstrip("/"), admin_url=args.admin_url.rstrip("/"), admin_token=token, key=args.key,
        kubeconfig=args.kubeconfig, namespace=args.namespace, country_header=args.country_header,
        regions=tuple(r.strip() for r in args.regions.split(",") if r.strip()), probe_country=args.probe_country,
        model=args.model, byok_model=args.byok_model, timeout=args.timeout, audit_wait=args.audit_wait,
        probe_marker=args.probe_marker,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``newapi compliance-check``."""
    token = _token(args)
    if token is None:
        print(f"newapi compliance-check: give --admin-token, --admin-token-file or set {TOKEN_ENV}", file=sys.stderr)
        return 2
    if args.probe_marker is not None:
        try:
            check_marker(args.probe_marker)
        except InvalidMarker as err:
            print(f"newapi compliance-check: --probe-marker: {err}", file=sys.stderr)
            return 2
    results = asyncio.run(run_checks(config_from_args(args, token)))
    if args.output == "json":
        print(json.dumps({"passed": exit_code(results) == 0, "results": [
            {"control": r.control, "result": r.outcome, "detail": r.detail} for r in results]}, indent=2))
    else:
        print(render_table(results))
    return exit_code(results)
