"""Benchmark: seconds per phantom case (one thread) for ``size="full"`` and ``size="small"``, with image sizes.

Also times the largest full-size geometry the sampler can draw (512 x 512 x 320 at 0.8 x 0.8 x 1.25 mm, the widest
field of view, so the coarsest whole-field grid and the most output voxels), and optionally writing a DICOM series.

Run:
    PYTHONPATH=AorticRootLandmarks:. .venv/bin/python benchmarks/bench_phantom.py
    PYTHONPATH=AorticRootLandmarks:. .venv/bin/python benchmarks/bench_phantom.py --size small --n 20
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import SimpleITK as sitk

from AorticRootLandmarksLib.phantom import case_from_params, generate_case
from AorticRootLandmarksLib.phantom.params import sample_params
from AorticRootLandmarksLib.phantom.dicom import write_dicom_series


def bench(size: str, n: int, seed: int) -> None:
    generate_case(0, seed, size)  # warm-up (imports, allocator)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        case = generate_case(i, seed, size)
        times.append(time.perf_counter() - t0)
        sx, sy, sz = case.image.GetSpacing()
        print(
            f"  {size:5s} {case.case_id}  {'x'.join(map(str, case.image.GetSize())):12s} "
            f"{sx:.2f}x{sy:.2f}x{sz:.2f} mm  quality {case.quality:2s}  {times[-1]:6.2f} s"
        )
    print(f"{size}: median {statistics.median(times):.2f} s/case, max {max(times):.2f} s (n={n})")


def bench_largest(seed: int, dicom: bool) -> None:
    params = copy.deepcopy(sample_params(seed, 0, "full"))
    params["grid"].update(size=[512, 512, 320], spacing=[0.8, 0.8, 1.25])
    t0 = time.perf_counter()
    case = case_from_params(params)
    dt = time.perf_counter() - t0
    print(f"largest full geometry 512x512x320 at 0.8x0.8x1.25 mm: {dt:.2f} s")
    if dicom:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_dicom_series(case.image, tmp, uid_key="bench", patient_id=case.case_id)
            print(f"writing it as 320 DICOM files: {time.perf_counter() - t0:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["full", "small", "both"], default="both")
    parser.add_argument("--n", type=int, default=None, help="cases per size (default: 4 full, 20 small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dicom", action="store_true", help="also time writing the largest case as DICOM")
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    if args.size in ("small", "both"):
        bench("small", args.n or 20, args.seed)
    if args.size in ("full", "both"):
        bench("full", args.n or 4, args.seed)
        bench_largest(args.seed, args.dicom)


if __name__ == "__main__":
    main()
