"""``aortic-root``: one command with subcommands, each a thin shell over a documented Python function.

Heavy imports (torch, training) happen inside the commands so ``--help`` is instant. Errors the user can cause print
one line ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .errors import InputError


def _existing(path: str) -> Path:
    if not Path(path).exists():
        raise argparse.ArgumentTypeError(f"{path}: no such file or folder")
    return Path(path)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one landmark name")
    return names


def cmd_phantom(args) -> None:
    from .phantom import write_dataset

    manifest = write_dataset(
        args.out, args.n, seed=args.seed, fmt=args.format, size=args.size, preview=args.preview, force=args.force
    )
    print(f"wrote {args.n} case(s): {manifest}")


def cmd_detect(args) -> None:
    from .batch import detect_files

    written = detect_files(args.images, args.out, args.model, args.device, force=args.force)
    print(f"wrote {len(written)} detection(s) (.json and Slicer .mrk.json, LPS) to {args.out}")


def cmd_train(args) -> None:
    import dataclasses

    from training.config import TrainConfig
    from training.train import train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in fields}  # flag names are the config's field names
    overrides.update(manifest=str(args.manifest), out=str(args.out))
    if args.no_augment:
        overrides["augment"] = False
    if args.config:
        config = TrainConfig.from_yaml(args.config, **overrides)
    else:
        config = TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    run = train(config, force=args.force, command=shlex.join(["aortic-root", *sys.argv[1:]]))
    print(f"run folder: {run}\nmodel: {run / 'model'}")


def cmd_sweep(args) -> None:
    from training.config import TrainConfig
    from training.sweep import sweep

    base = TrainConfig.from_yaml(args.config, manifest=str(args.manifest)) if args.config else TrainConfig(
        manifest=str(args.manifest)
    )
    grid = {}
    for key in ("loss", "sigma", "penalty", "lr"):
        values = getattr(args, key)
        if values:
            grid[key] = [v if key == "loss" else float(v) for v in values.split(",")]
    if not grid:
        raise InputError("sweep: give at least one of --loss, --sigma, --penalty, --lr with comma-separated values")
    summary = sweep(base, grid, args.out, force=args.force)
    print(f"sweep summary: {summary} and {summary.with_suffix('.png')}")


def cmd_evaluate(args) -> None:
    from training.evaluate import evaluate, format_table

    result = evaluate(args.pred_dir, args.manifest, args.out, args.landmarks, force=args.force)
    print(format_table(result))
    if args.out:
        print(f"per-case CSV, summary JSON and figure: {args.out}")


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(args.out, n=args.n, model=args.model, device=args.device, force=args.force)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=_existing, help="model or run folder (default: the bundled model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aortic-root",
        description="Aortic valve hinge points (RCC, LCC, NCC) in CT: phantom data, training, detection, evaluation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the main job in one command: phantom CTs -> detect (bundled model) -> evaluate")
    p.add_argument("--out", type=Path, default=Path("aortic-root-demo"), help="output folder (default: %(default)s)")
    p.add_argument("--n", type=int, default=3, help="number of phantom CTs (default: %(default)s)")
    _add_model_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("phantom", help="write synthetic contrast CTs of the aortic root with exact hinge points")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--n", type=int, required=True, help="number of cases")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("nifti", "dicom"), default="nifti")
    p.add_argument("--size", choices=("small", "full"), default="full")
    p.add_argument("--preview", action="store_true", help="also write a PNG preview per case")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("detect", help="detect hinge points in CT files or DICOM folders")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image file or DICOM series folder")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_model_options(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("train", help="train a fold ensemble with cross-validation and export it")
    p.add_argument("manifest", type=_existing, help="dataset manifest CSV")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--config", type=_existing, help="YAML config; flags given here override it")
    p.add_argument("--loss", choices=("glip", "ot", "wce", "focal", "mse", "l1", "sl1"))
    p.add_argument("--penalty", type=float, help="grid-penalty weight lambda (glip default 10)")
    p.add_argument("--penalty-target", choices=("sqrt3", "one"), help="per-axis slope c: 1/sqrt(3) (default) or 1")
    p.add_argument("--sigma", type=float, help="heatmap sigma, mm (default 1)")
    p.add_argument("--spacing", type=float, help="network grid spacing, mm (default 1.6)")
    p.add_argument("--size", type=int, nargs=3, metavar=("X", "Y", "Z"), help="network grid size (default 128 128 80)")
    p.add_argument("--architecture", choices=("per_landmark", "shared"), help="one U-Net per landmark (default)")
    p.add_argument("--features", type=int, nargs="+", help="U-Net channels per level")
    p.add_argument("--restore-channels", type=int, help="channels of the full-resolution layer (default 8)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--folds", type=int, help="k-fold CV (default 4); 1 = one train/validation split")
    p.add_argument("--test-fraction", type=float, help="held-out test share (default 0.2)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--landmarks", type=_names, help="comma-separated names (default RCC,LCC,NCC)")
    p.add_argument("--decoding", choices=("argmax", "quadratic", "centroid"))
    p.add_argument("--name", help="model name")
    p.add_argument("--cache-dir", help="preprocessed-volume cache (default ~/.cache/aortic-root)")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train one run per combination of settings and compare them")
    p.add_argument("manifest", type=_existing, help="dataset manifest CSV")
    p.add_argument("--out", type=Path, required=True, help="sweep folder")
    p.add_argument("--config", type=_existing, help="YAML config with the shared settings")
    p.add_argument("--loss", help="comma-separated, e.g. glip,wce,focal")
    p.add_argument("--sigma", help="comma-separated mm, e.g. 1,2,4")
    p.add_argument("--penalty", help="comma-separated lambdas, e.g. 0,10")
    p.add_argument("--lr", help="comma-separated learning rates")
    p.add_argument("--force", action="store_true", help="replace an existing sweep folder")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("evaluate", help="landmark errors, plane metrics and detection rates against a manifest")
    p.add_argument("pred_dir", type=_existing, metavar="PRED_DIR", help="folder of <case>.json from detect")
    p.add_argument("manifest", type=_existing, metavar="MANIFEST", help="dataset manifest CSV with the truth")
    p.add_argument("--out", type=Path, help="write per_case.csv, summary.json and errors.png here")
    p.add_argument("--landmarks", type=_names, default=["RCC", "LCC", "NCC"], help="default RCC,LCC,NCC")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
