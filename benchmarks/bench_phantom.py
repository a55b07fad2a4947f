"""Benchmark: seconds per phantom case (one thread) for ``size="full"`` and ``size="small"``, with image sizes.

Also times the largest full-size geometry the style can draw (classic: 512 x 512 x 320 at 0.8 x 0.8 x 1.25 mm; the
other styles: 512 x 512 x 400 at 0.88 x 0.88 x 1.125 mm, a 450 mm field of view and 450 mm coverage), and
optionally writing a DICOM series. Bias: one thread, and the machine may run other jobs; read the max with that in
mind.

Run:
    PYTHONPATH=AorticRootLandmarks:. .venv/bin/python benchmarks/bench_phantom.py
    PYTHONPATH=AorticRootLandmarks:. .venv/bin/python benchmarks/bench_phantom.py --size small --n 20
    PYTHONPATH=AorticRootLandmarks:. .venv/bin/python benchmarks/bench_phantom.py --size full --style train --n 6
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import SimpleITK as sitk

from AorticRootLandmarksLib.phantom import PHANTOM_VERSION, case_from_params, generate_case
from AorticRootLandmarksLib.phantom.dicom import write_dicom_series
from AorticRootLandmarksLib.phantom.params import sample_params
from AorticRootLandmarksLib.phantom.styles import STYLES

#: style -> the largest full grid it can draw: (size, spacing).
LARGEST = {"classic": ([512, 512, 320], [0.8, 0.8, 1.25])}
LARGEST_STYLE = ([512, 512, 400], [450 / 512, 450 / 512, 1.125])


def bench(size: str, n: int, seed: int, style: str) -> None:
    generate_case(0, seed, size, style)  # warm-up (imports, allocator)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        case = generate_case(i, seed, size, style)
        times.append(time.perf_counter() - t0)
        sx, sy, sz = case.image.GetSpacing()
        print(
            f"  {size:5s} {case.case_id}  {'x'.join(map(str, case.image.GetSize())):12s} "
            f"{sx:.2f}x{sy:.2f}x{sz:.2f} mm  quality {case.quality:2s}  {times[-1]:6.2f} s"
        )
    print(f"{style} {size}: median {statistics.median(times):.2f} s/case, max {max(times):.2f} s (n={n})")


def bench_largest(seed: int, dicom: bool, style: str) -> None:
    params = copy.deepcopy(sample_params(seed, 0, "full", style))
    size, spacing = LARGEST.get(style, LARGEST_STYLE)
    params["grid"].update(size=size, spacing=spacing)
    if "slice_fwhm_mm" in params["grid"]:
        params["grid"]["slice_fwhm_mm"] = spacing[2]
    t0 = time.perf_counter()
    case = case_from_params(params)
    dt = time.perf_counter() - t0
    shape = "x".join(map(str, size))
    print(f"{style}: largest full geometry {shape} at {'x'.join(f'{s:.2f}' for s in spacing)} mm: {dt:.2f} s")
    if dicom:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_dicom_series(case.image, tmp, uid_key="bench", patient_id=case.case_id)
            print(f"writing it as {size[2]} DICOM files: {time.perf_counter() - t0:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["full", "small", "both"], default="both")
    parser.add_argument("--n", type=int, default=None, help="cases per size (default: 4 full, 20 small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dicom", action="store_true", help="also time writing the largest case as DICOM")
    parser.add_argument("--style", choices=list(STYLES) + ["all"], default="classic", help="phantom style")
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    print(f"phantom version {PHANTOM_VERSION}")
    for style in STYLES if args.style == "all" else [args.style]:
        if args.size in ("small", "both"):
            bench("small", args.n or 20, args.seed, style)
        if args.size in ("full", "both"):
            bench("full", args.n or 4, args.seed, style)
            bench_largest(args.seed, args.dicom, style)


if __name__ == "__main__":
    main()
