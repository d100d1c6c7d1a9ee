"""The final table of issue 16's targets: name, geoshare, bare, ratio, target, met.

Every benchmark part (``bench.run``'s S1 and S2, ``bench.ingest``, ``bench.storm``)
returns rows ``{"name", "geoshare", "bare", "ratio", "target", "met"}``; this prints
them the same way, whoever ran them.
"""

from __future__ import annotations


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def summary_text(rows: list[dict]) -> str:
    """The rows as a plain-text table (``-`` for a value that was not measured)."""
    head = ["target", "geoshare", "bare", "ratio", "wanted", "met"]
    body = [
        [
            r["name"],
            _cell(r.get("geoshare")),
            _cell(r.get("bare")),
            _cell(r.get("ratio")) + ("x" if r.get("ratio") is not None else ""),
            r.get("target", "-"),
            _cell(bool(r.get("met"))),
        ]
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]

    def line(cells):
        return "  ".join(
            c.ljust(w) if i in (0, 4) else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        )

    out = [line(head), "-" * len(line(head))]
    out += [line(b) for b in body]
    return "\n".join(out)


def print_summary(rows: list[dict], title: str = "Targets (issue 16)") -> None:
    """Print :func:`summary_text` under ``title``."""
    print(f"\n{title}", flush=True)
    print(summary_text(rows), flush=True)
