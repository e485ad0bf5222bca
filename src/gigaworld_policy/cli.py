"""`gwp` command line: a thin layer over library functions."""

from __future__ import annotations

import argparse
import json
import sys

from .config import PRESETS


def _bench_latency(args: argparse.Namespace) -> None:
    from .bench import format_latency, measure_latency

    result = measure_latency(args.preset, args.device, args.threads, args.batch_size, args.steps, args.repeats)
    print(json.dumps(result) if args.json else format_latency(result))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gwp", description="GigaWorld-Policy command line")
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="benchmark", required=True)
    latency = bench.add_parser("latency", help="decoding latency: cached action-only vs uncached vs joint")
    latency.add_argument("--preset", default="bench", choices=sorted(PRESETS))
    latency.add_argument("--device", default="cpu")
    latency.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    latency.add_argument("--batch-size", type=int, default=1)
    latency.add_argument("--steps", type=int, default=None, help="Euler steps (default: the preset's)")
    latency.add_argument("--repeats", type=int, default=3, help="timed runs per path (median reported)")
    latency.add_argument("--json", action="store_true", help="print one JSON object")
    latency.set_defaults(run=_bench_latency)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValueError as error:
        sys.exit(f"gwp: error: {error}")


if __name__ == "__main__":
    main()
