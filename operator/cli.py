"""The ``newapi`` command: one entry point for every process of the product."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .version import __version__


def _crds(args: argparse.Namespace) -> int:
    from .crdgen import write_crds

    changed = write_crds(args.out_dir, check=args.check)
    if args.check and changed:
        print(f"newapi crds: {args.out_dir} is out of date: {', '.join(changed)}; run `newapi crds`", file=sys.stderr)
        return 1
    return 0


def _gateway(args: argparse.Namespace) -> int:
    from newapi_gateway.main import run

    return run(args)


def _apiserver(args: argparse.Namespace) -> int:
    from .apiserver.command import run

    return run(args)


def _operator(args: argparse.Namespace) -> int:
    from .controller.runner import run

    return run(args)


def _dev(args: argparse.Namespace) -> int:
    from .dev.orchestrator import run

    return run(args)


def _compliance_check(args: argparse.Namespace) -> int:
    from newapi_gateway.compliance.check_command import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newapi", description="newapi-operator: LLM reseller gateway on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"newapi-operator {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("crds", help="generate the CustomResourceDefinitions from the API models")
    p.add_argument("--out-dir", default="crds", help="directory to write the CRD YAML files to (default: crds)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files differ")
    p.set_defaults(func=_crds)

    p = sub.add_parser("gateway", help="run the gateway data plane (OpenAI/Anthropic-compatible API)")
    from newapi_gateway.options import add_arguments as add_gateway_arguments

    add_gateway_arguments(p)
    p.set_defaults(func=_gateway)

    p = sub.add_parser("apiserver", help="serve the local Kubernetes API server with the CRDs registered")
    from .apiserver.command import add_arguments as add_apiserver_arguments

    add_apiserver_arguments(p)
    p.set_defaults(func=_apiserver)

    p = sub.add_parser("operator", help="run the operator (Kopf) against the current kubeconfig or in-cluster")
    from .controller.options import add_arguments as add_operator_arguments

    add_operator_arguments(p)
    p.set_defaults(func=_operator)

    p = sub.add_parser("dev", help="run the whole product locally: API server, operator, gateway, demo upstream")
    from .dev.options import add_arguments as add_dev_arguments

    add_dev_arguments(p)
    p.set_defaults(func=_dev)

    p = sub.add_parser("compliance-check", help="run the compliance smoke test against a live stack")
    from newapi_gateway.compliance.check_command import add_arguments as add_check_arguments

    add_check_arguments(p)
    p.set_defaults(func=_compliance_check)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
