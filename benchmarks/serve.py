"""`python -m benchmarks.serve [--switch-interval S] -- <adapterserve serve args>`: the real server, with
interpreter settings the service does not expose, to measure proposed changes without editing service/.

--switch-interval: sys.setswitchinterval (CPython's default is 0.005 s). The inference thread releases the
GIL inside every torch op and must take it back after; while the event loop thread holds it, the inference
thread waits up to this interval for each op's return.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" in argv:
        i = argv.index("--")
        ours, rest = argv[:i], argv[i + 1 :]
    else:
        ours, rest = argv, []
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve")
    p.add_argument("--switch-interval", type=float, default=None)
    args = p.parse_args(ours)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    from adapterserve.cli import main as serve_main

    return serve_main(rest)


if __name__ == "__main__":
    sys.exit(main())
