"""Summarise a ``py-spy record --format raw`` file: ``python -m bench.stacks FILE [N]``.

Prints the N functions with the most samples on top of the stack (self) and the N with
the most samples anywhere in the stack (inclusive), as percentages of all samples.
"""

import collections
import sys

SKIP = (
    "click/",
    "runpy",
    "uvicorn/main.py",
    "uvicorn/_compat.py",
    "uvicorn/server.py",
    "uvicorn/__main__.py",
    "threading.py",
    "concurrent/futures/thread.py",
)


def summarise(path: str, n: int = 30) -> str:
    """Return the self and inclusive top-``n`` tables of one raw py-spy file."""
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            k = int(count)
            total += k
            frames = stack.split(";")
            own[frames[-1]] += k
            for frame in set(frames):
                incl[frame] += k
    out = [f"{path}: {total} samples", "-- self"]
    out += [f"{100 * k / total:5.1f}%  {f}" for f, k in own.most_common(n)]
    out.append("-- inclusive")
    shown = [(f, k) for f, k in incl.most_common() if not any(s in f for s in SKIP)]
    out += [f"{100 * k / total:5.1f}%  {f}" for f, k in shown[:n]]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30))
