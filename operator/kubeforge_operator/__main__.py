"""`python -m kubeforge_operator`: run the operator against the current kubeconfig (or in-cluster).

Watches TrainingJobs (and DataIngests) cluster-wide, or only in the namespaces given with
`--namespace`; serves Prometheus metrics and a liveness endpoint. One replica at a time
(`--standalone`, no kopf peering): run it as a Deployment with replicas 1 and Recreate.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import Sequence

import kopf
from prometheus_client import start_http_server

from kubeforge_operator.dataingest.builders import DEFAULT_IMAGE

# Importing the handlers registers them with kopf.
from kubeforge_operator.handlers import Settings


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kubeforge_operator", description=__doc__)
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; glob patterns allowed); default: all",
    )
    parser.add_argument("--metrics-port", type=int, default=8080, help="Prometheus port (0: off)")
    parser.add_argument(
        "--health-port", type=int, default=8081, help="liveness endpoint /healthz port (0: off)"
    )
    parser.add_argument(
        "--crawler-image",
        default=DEFAULT_IMAGE,
        help=f"crawler image of the DataIngests that name none (default: {DEFAULT_IMAGE})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def run(
    namespaces: Sequence[str] = (),
    *,
    health_port: int = 0,
    crawler_image: str = DEFAULT_IMAGE,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    """Runs the operator until `stop_flag` is set (or a signal arrives, in the main thread)."""
    asyncio.run(
        kopf.operator(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz" if health_port else None,
            memo=kopf.Memo(settings=Settings(crawler_image=crawler_image)),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.metrics_port:
        start_http_server(args.metrics_port)
    run(args.namespace, health_port=args.health_port, crawler_image=args.crawler_image)


if __name__ == "__main__":
    main()
