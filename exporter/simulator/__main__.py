"""`python -m exporter.simulator --listen 127.0.0.1:8080`: serve the fake vendor APIs."""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

from .core import Simulator, demo_simulator, vendor_classes
from .server import create_app


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return (host.strip("[]") or "127.0.0.1"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exporter.simulator", description="Fake live-streaming vendor APIs."
    )
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080), help="HOST:PORT")
    parser.add_argument(
        "--demo-network",
        action="store_true",
        help="each vendor's typical latency, and list answers in pieces, as --demo has them",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the latencies and gaps drawn")
    args = parser.parse_args(argv)
    sim = demo_simulator(seed=args.seed) if args.demo_network else Simulator(seed=args.seed)
    host, port = args.listen
    root = f"http://{host}:{port}"
    for vendor in vendor_classes():
        print(f"{vendor.name:16} base_url {root}{vendor.prefix}", flush=True)
    print(f"{'control':16} POST {root}/_sim/control, GET {root}/_sim/requests", flush=True)
    # No access log: query strings may carry credentials.
    web.run_app(create_app(sim), host=host, port=port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
