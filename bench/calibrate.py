"""How fast this machine's CPU is right now: ``python -m bench.calibrate``.

Times one fixed piece of pure Python (``sum(range(1_000_000))``, 20 times: the best of
three) once every ``--every`` seconds, ``--times`` times, and prints each in ms. On an
idle machine the numbers should agree within a few per cent; where they do not (a
virtual machine whose host is shared), the benchmarks' absolute numbers move with them,
and only runs alternated back to back, or ratios to a control measured in the same run,
compare (docs/benchmarks.md, "Machine").
"""

from __future__ import annotations

import argparse
import json
import time
import timeit


def once() -> float:
    """The best of three timings of the fixed work, in ms."""
    return min(timeit.repeat("sum(range(1_000_000))", number=20, repeat=3)) * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, default=6)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between")
    args = parser.parse_args(argv)
    results = []
    for n in range(args.times):
        if n:
            time.sleep(args.every)
        results.append(round(once()))
    print(json.dumps({"ms": results, "spread": round(max(results) / min(results), 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
