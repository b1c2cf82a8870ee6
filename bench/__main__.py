"""``python -m bench [--quick] [--only B1,B5] [--out PATH] [--keep] [--serve-arg=ARG ...]``: run, print one table, write JSON."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import trio


def main(argv: list[str] | None = None) -> int:
    from ._runner import ALL, Bench

    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="a reduced run, under two minutes")
    p.add_argument("--only", default="", help=f"comma-separated scenario ids, of {','.join(ALL)}")
    p.add_argument("--out", default=os.environ.get("BENCH_OUT") or ".bench/latest.json",
                   help="where to write the JSON (default $BENCH_OUT or .bench/latest.json)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (logs, specs, profiles)")
    p.add_argument("--loadgen", choices=("auto", "python"), default="auto",
                   help="HTTP load generator: wrk when it can be had (auto), or always the Python one")
    p.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                   help="an extra flag for the gateways' `jetkube serve` (repeatable), e.g. "
                        "--serve-arg=--tracing-config-file=FILE to measure tracing")
    args = p.parse_args(argv)
    only = {s.strip().upper() for s in args.only.split(",") if s.strip()} or None
    bench = Bench(quick=args.quick, only=only, out_path=Path(args.out), keep=args.keep,
                  force_python=args.loadgen == "python", serve_args=tuple(args.serve_arg))
    try:
        trio.run(bench.run)
    except KeyboardInterrupt:
        bench.children.close()
        print("interrupted", file=sys.stderr)
    except BaseException as e:  # noqa: BLE001 - benchmarks never fail the build
        bench.children.close()
        print(f"benchmark run aborted: {type(e).__name__}: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
