"""Benchmark: what the plan adds to ``aortic-root detect`` per case (``--no-plan`` leaves it out).

Per full-size phantom CT (classic style, true hinge points as a detection would give them): ``make_plan`` (lumen
traced on the annulus plane, S-curve, named views, heights), writing ``<case>.plan.json``, and the figure
``<case>.plan.png`` (two long-axis reconstructions, PNG encoding), plus ``index.html`` for all cases. Wall time and
process CPU time; the first figure of a process also pays for importing matplotlib, reported apart. Bias: the
machine may run other jobs (then the wall time is above the CPU time); the phantom CTs are not timed.

Run:
    PYTHONPATH=AorticRootLandmarks:. .venv/bin/python benchmarks/bench_plan.py --n 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from AorticRootLandmarksLib import qc
from AorticRootLandmarksLib.constants import HINGE_NAMES
from AorticRootLandmarksLib.phantom import generate_case
from AorticRootLandmarksLib.plan import make_plan, save_plan_figure, write_index
from AorticRootLandmarksLib.plan.files import plan_paths


def _timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _write_json(path: Path, plan) -> None:
    path.write_text(json.dumps(plan.to_dict(), indent=2), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3, help="number of full-size phantom CTs")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    _, wall, cpu = _timed(__import__, "matplotlib.backends.backend_agg")
    print(f"import matplotlib (once per process): {wall:.2f} s wall, {cpu:.2f} s CPU")
    rows, plans = [], {}
    with tempfile.TemporaryDirectory() as folder:
        for index in range(args.n):
            case = generate_case(index, args.seed, "full")
            names = list(HINGE_NAMES)
            report = qc.assess(names, case.landmarks_lps, None, [40.0] * 3, [1.0] * 3, {})
            detection = SimpleNamespace(quality=report, confidence=report.confidence)
            plan, *t_plan = _timed(make_plan, case.image, names, case.landmarks_lps, detection, case=case.case_id)
            json_path, png_path = plan_paths(folder, case.case_id)
            _, *t_json = _timed(_write_json, json_path, plan)
            _, *t_fig = _timed(save_plan_figure, plan, case.image, png_path)
            plans[case.case_id] = plan
            rows.append(np.array([t_plan, t_json, t_fig]))
            size = "x".join(map(str, case.image.GetSize()))
            print(f"  {case.case_id} {size:12s} plan {t_plan[0]:.2f} s, json {t_json[0]:.2f} s, "
                  f"figure {t_fig[0]:.2f} s (wall; CPU {t_plan[1]:.2f} / {t_json[1]:.2f} / {t_fig[1]:.2f} s)")
        _, *t_index = _timed(write_index, plans, Path(folder) / "index.html")
    for k, what in enumerate(("make_plan", "plan.json", "figure")):
        wall = statistics.median(float(r[k, 0]) for r in rows)
        cpu = statistics.median(float(r[k, 1]) for r in rows)
        print(f"{what:10s} median {wall:.2f} s wall, {cpu:.2f} s CPU per case (n={args.n})")
    total = statistics.median(float(r[:, 0].sum()) for r in rows)
    total_cpu = statistics.median(float(r[:, 1].sum()) for r in rows)
    print(f"plan in all: median {total:.2f} s wall, {total_cpu:.2f} s CPU per case; index.html {t_index[0]:.3f} s")


if __name__ == "__main__":
    main()
