"""CPU timing of UNet3D variants on the default network grid (1 x 1 x 128 x 128 x 80).

Times, per variant, batch size and memory format: the forward pass (inference mode) and one training step
(forward + GLiP loss + backward + Adam step), median of ``--reps`` runs after one warm-up. Prints a Markdown table.

Run (about 3-4 minutes for everything on 2 cores; pick variants with --only):
    PYTHONPATH=AorticRootLandmarks:. .venv/bin/python benchmarks/bench_network.py --threads 2
    PYTHONPATH=AorticRootLandmarks:. .venv/bin/python benchmarks/bench_network.py --only default,s2-8 --batch 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from AorticRootLandmarksLib.network import UNet3D, count_parameters
from training.losses import glip_loss

#: name -> UNet3D kwargs. "full-8" is the classical full-resolution U-Net (the reference that is too slow).
VARIANTS: dict[str, dict] = {
    "default": {},
    "s2-8": dict(features=(8, 16, 32, 64)),
    "s2-24": dict(features=(24, 48, 96, 192)),
    "s2-32": dict(features=(32, 64, 128, 256)),
    "s2-16-conv": dict(down="conv"),
    "s2-16-rc16": dict(restore_channels=16),
    "full-8": dict(features=(8, 16, 32, 64, 128), stem_stride=1),
}


def _median_seconds(fn, reps: int) -> float:
    fn()  # warm-up: oneDNN primitive creation, allocator
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(kwargs: dict, batch: int, channels_last: bool, reps: int, train: bool, size=(128, 128, 80)) -> tuple:
    """Return (forward seconds, train-step seconds or nan) for one variant."""
    torch.manual_seed(0)
    net = UNet3D(**kwargs)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    x = torch.rand(batch, 1, *size).to(memory_format=fmt)
    target = torch.rand(batch, net.config()["out_channels"], *size)

    def forward() -> None:
        with torch.inference_mode():
            net(x)

    net.eval()
    t_fwd = _median_seconds(forward, reps)
    t_train = float("nan")
    if train:
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            glip_loss(net(x), target).backward()
            opt.step()

        t_train = _median_seconds(step, reps)
    return t_fwd, t_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    parser.add_argument("--batch", default="1,2", help="comma-separated batch sizes")
    parser.add_argument("--memory", default="contiguous,channels_last", help="contiguous and/or channels_last")
    parser.add_argument("--no-train", action="store_true", help="time the forward pass only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.only.split(",") if args.only else list(VARIANTS)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.reps}, input Bx1x128x128x80")
    print("| variant | params | batch | memory | forward s | fwd+bwd+Adam s |")
    print("|---|---|---|---|---|---|")
    for name in names:
        params = count_parameters(UNet3D(**VARIANTS[name]))
        for batch in (int(b) for b in args.batch.split(",")):
            for memory in args.memory.split(","):
                t_fwd, t_train = bench(VARIANTS[name], batch, memory == "channels_last", args.reps, not args.no_train)
                print(f"| {name} | {params / 1e6:.2f} M | {batch} | {memory} | {t_fwd:.2f} | {t_train:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
