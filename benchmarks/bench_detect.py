"""Benchmark: one CT end to end (read + resample + network + decode), a training step, and peak memory.

Prints figures; asserts nothing. Run on a bare machine for numbers worth quoting:

    .venv/bin/python benchmarks/bench_detect.py                 # bundled model, CPU threads = all cores
    .venv/bin/python benchmarks/bench_detect.py --device cuda   # on a GPU machine
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from AorticRootLandmarksLib.detection import detect
from AorticRootLandmarksLib.grid import make_grid, resample_to_grid
from AorticRootLandmarksLib.inference import bundled_model_dir, decode_peaks, load_ensemble, predict_maps
from AorticRootLandmarksLib.io import read_image
from AorticRootLandmarksLib.localize import locate_root
from AorticRootLandmarksLib.network import build_network


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def make_ct(path: Path) -> None:
    """A 512x512x320 int16 CT at 0.4 x 0.4 x 0.5 mm: the full-size phantom when available, else noise."""
    try:
        from AorticRootLandmarksLib.phantom import generate_case

        image = generate_case(0, seed=99, size="full").image
        image = sitk.Resample(image, [512, 512, 320], sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                              [0.4, 0.4, 0.5], image.GetDirection(), -1000, sitk.sitkInt16)
    except ImportError:
        array = np.random.default_rng(0).normal(0, 300, (320, 512, 512)).astype(np.int16)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.4, 0.4, 0.5))
    sitk.WriteImage(image, str(path), useCompression=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=bundled_model_dir())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {args.device}, CPU threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ct.nii.gz"
        make_ct(path)
        t_read, image = timed(lambda: read_image(path), args.repeat)
    ensemble = load_ensemble(args.model, args.device)
    single = type(ensemble)(ensemble.networks[:1], ensemble.meta, ensemble.device)
    spec = ensemble.grid_spec
    grid = make_grid(image, spec)
    t_resample, volume = timed(lambda: resample_to_grid(image, grid, spec.window), args.repeat)
    predict_maps(single, volume)  # warm-up
    t_net, maps = timed(lambda: predict_maps(single, volume), args.repeat)
    t_decode, _ = timed(lambda: decode_peaks(maps.mean(0), ensemble.decoding), args.repeat)
    t_single, _ = timed(lambda: detect(image, single, tta=False), args.repeat)
    t_one_grid, _ = timed(lambda: detect(image, ensemble, tta=False), args.repeat)
    t_ensemble, _ = timed(lambda: detect(image, ensemble), args.repeat)
    located = type(ensemble)(ensemble.networks[:1], ensemble.meta, ensemble.device, ensemble.localizer)
    t_locate = timed(lambda: locate_root(image, ensemble.localizer), args.repeat)[0] if ensemble.localizer else None
    t_located = timed(lambda: detect(image, located, tta=False), args.repeat)[0] if ensemble.localizer else None

    print(f"CT {image.GetSize()} spacing {tuple(round(s, 2) for s in image.GetSpacing())} -> grid {spec.size} "
          f"at {spec.spacing} mm; model {args.model.name}: {len(ensemble.networks)} fold(s), "
          f"features {ensemble.meta['network'].get('features')}")
    rows = [
        ("read .nii.gz", t_read),
        ("resample (box-mean anti-alias) + window", t_resample),
        ("network forward, one model", t_net),
        ("decode peaks", t_decode),
        ("detect, one model (no read), grid on the image centre", t_single),
        ("read + detect, one model, grid on the image centre", t_read + t_single),
        *([("find the root (localizer, all its folds)", t_locate),
           ("read + detect, one model + localizer", t_read + t_located)] if t_locate is not None else []),
        (f"detect, ensemble of {len(ensemble.networks)}, one grid (--no-tta; no read)", t_one_grid),
        (f"detect, ensemble of {len(ensemble.networks)}, 5 grids (test-time augmentation, the default; no read)",
         t_ensemble),
        (f"read + detect, ensemble of {len(ensemble.networks)}, the default", t_read + t_ensemble),
    ]
    if not args.skip_train:
        from training.heatmaps import gaussian_heatmaps
        from training.losses import make_loss

        network = build_network(ensemble.meta["network"]).to(args.device, memory_format=torch.channels_last_3d).train()
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
        loss_fn = make_loss("glip")
        for batch in (1, 2):
            x = torch.from_numpy(volume)[None, None].repeat(batch, 1, 1, 1, 1)
            x = x.to(args.device, memory_format=torch.channels_last_3d)
            points = torch.tensor(np.array(spec.size) / 2.0, dtype=torch.float32).repeat(batch, len(ensemble.names), 1)
            target = gaussian_heatmaps(spec.size, points, 1.0, spec.spacing).to(args.device)

            def step(x=x, target=target):
                loss = loss_fn(network(x), target)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

            step()  # warm-up
            rows.append((f"training step, batch {batch} (forward + backward + Adam)", timed(step, args.repeat)[0]))
    width = max(len(name) for name, _ in rows)
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.3f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak resident memory (process)':<{width}}  {peak:7.0f} MiB")
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        print(f"{'peak CUDA memory':<{width}}  {torch.cuda.max_memory_allocated() / 2**20:7.0f} MiB")


if __name__ == "__main__":
    main()
