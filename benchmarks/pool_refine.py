"""Pool the per-case errors of several ``bench_refine.py --json`` results: the table model choices are made on.

A choice between two models (or settings) is made on several validation sets at once (docs/TRAINING_NOTES.md: the
320 points of val-edge, val-train and val-classic). Per stage this prints each set's median / p95 and, over all
points of all sets together, the median, 75th, 90th and 95th percentile, mean, the number of points over 5 and
10 mm and the maximum (mm).

    .venv/bin/python benchmarks/pool_refine.py A-val-edge.json A-val-train.json ...

The files must cover the same landmarks. Give validation results only: a test split or a held-out style pooled here
would take part in the choice.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

#: Errors above these (mm) are counted.
COUNTS_MM = (5.0, 10.0)


def pooled(results: list[dict], stage: int) -> dict:
    """Pooled figures of one stage (1 or 2) over the per-case errors of `results` (bench_refine ``--json`` dicts).

    Returns:
        ``n`` points, ``median``, ``p75``, ``p90``, ``p95``, ``mean``, ``max`` (mm), ``over_5`` and ``over_10``
        (counts), and ``sets``: per result its ``median`` and ``p95`` over its own points.

    Raises:
        ValueError: no results, or results over different landmarks.
    """
    if not results:
        raise ValueError("no results to pool")
    if len({tuple(r["landmarks"]) for r in results}) > 1:
        covered = "; ".join(",".join(r["landmarks"]) for r in results)
        raise ValueError(f"the results cover different landmarks: {covered}")
    key = f"stage{stage}_mm"
    per_set = [np.array([e for case in r["cases"] for e in case[key]], dtype=float) for r in results]
    errors = np.concatenate(per_set)
    out = {"n": int(errors.size), "mean": float(errors.mean()), "max": float(errors.max()),
           "median": float(np.median(errors)), "sets": [{"median": float(np.median(e)),
           "p95": float(np.percentile(e, 95))} for e in per_set]}  # fmt: skip
    out.update({f"p{q}": float(np.percentile(errors, q)) for q in (75, 90, 95)})
    out.update({f"over_{t:g}": int((errors > t).sum()) for t in COUNTS_MM})
    return out


def format_rows(results: list[dict], names: list[str]) -> str:
    """A Markdown table: per stage, each set's median / p95 and the pooled figures."""
    head = " | ".join(f"{n} median / p95" for n in names)
    lines = [f"| stages | {head} | pooled median | p75 | p90 | p95 | mean | > 5 mm | > 10 mm | max |",
             "|---|" + "---|" * (len(names) + 8)]  # fmt: skip
    for stage, label in ((1, "1"), (2, "1 + 2")):
        p = pooled(results, stage)
        sets = " | ".join(f"{s['median']:.2f} / {s['p95']:.2f}" for s in p["sets"])
        lines.append(f"| {label} | {sets} | {p['median']:.2f} | {p['p75']:.2f} | {p['p90']:.2f} | {p['p95']:.2f} | "
                     f"{p['mean']:.2f} | {p['over_5']} | {p['over_10']} | {p['max']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench_refine.py --json files (validation sets)")
    args = parser.parse_args(argv)
    try:
        results = [json.loads(path.read_text(encoding="utf-8")) for path in args.results]
        print(format_rows(results, [path.stem for path in args.results]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        parser.exit(2, f"error: cannot pool {', '.join(map(str, args.results))}: {err}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
