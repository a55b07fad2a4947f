"""``aortic-root``: one command with subcommands, each a thin shell over a documented Python function.

Heavy imports (torch, training) happen inside the commands so ``--help`` is instant. The ``train`` and ``sweep`` flags
are generated from ``training.config.TrainConfig``'s fields. Errors the user can cause print one line
``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from AorticRootLandmarksLib import __version__
from AorticRootLandmarksLib.constants import DEFAULT_LANDMARKS
from AorticRootLandmarksLib.errors import InputError

#: TrainConfig fields that are not flags of ``train`` (positional arguments or ``--out``).
_NOT_FLAGS = ("manifest", "out")


def _existing(path: str) -> Path:
    if not Path(path).exists():
        raise argparse.ArgumentTypeError(f"{path}: no such file or folder")
    return Path(path)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one landmark name")
    return names


def _config_fields():
    from training.config import TrainConfig, field_types

    types = field_types()
    return [(f, types[f.name]) for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_FLAGS]


def _default_text(item: dataclasses.Field) -> str:
    default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
    if default is None or default == "":
        return ""
    shown = ",".join(map(str, default)) if isinstance(default, list) and item.name == "landmarks" else default
    shown = " ".join(map(str, shown)) if isinstance(shown, list) else shown
    return f" (default: {shown})"


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (``--steps-per-epoch`` for ``steps_per_epoch``); unset flags are None."""
    for item, kind in _config_fields():
        flag = "--" + item.name.replace("_", "-")
        text = item.metadata["help"] + _default_text(item)
        choices = item.metadata.get("choices")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif item.name == "landmarks":
            parser.add_argument(flag, type=_names, metavar="A,B,C", help=text)
        elif getattr(kind, "__origin__", None) is list:
            default = item.default_factory() if item.default_factory is not dataclasses.MISSING else None
            nargs = len(default) if isinstance(default, list) else "+"  # fixed-length lists: size, window, ranges
            parser.add_argument(flag, type=kind.__args__[0], nargs=nargs, help=text)
        else:
            aliases = item.metadata.get("aliases", ())  # e.g. --from for --from-run
            kind = _stage_name if item.name == "stage" else kind
            parser.add_argument(flag, *aliases, type=kind, choices=choices, help=text)


def _stage_name(text: str) -> str:
    """--stage 1 / 2 are the landmark model / its second stage (training.config.STAGE_NUMBERS)."""
    from training.config import STAGE_NUMBERS

    return STAGE_NUMBERS.get(text, text)


def config_overrides(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given as flags (None = not given)."""
    return {item.name: getattr(args, item.name) for item, _ in _config_fields()}


def add_sweep_flags(parser: argparse.ArgumentParser) -> None:
    """For each scalar TrainConfig field, a flag taking comma-separated values to sweep over (``--sigma 1,2,4``)."""
    for item, kind in _config_fields():
        if kind in (int, float, str) and item.name not in ("device", "cache_dir", "name"):
            flag = "--" + item.name.replace("_", "-")
            parser.add_argument(flag, dest=item.name, metavar="V1,V2", help=f"values of {item.name} to sweep over")


def sweep_grid(args: argparse.Namespace) -> dict[str, list]:
    """{field: [values]} from the sweep flags that were given, each value parsed as the field's type."""
    grid = {}
    for item, kind in _config_fields():
        text = getattr(args, item.name, None)
        if text is None:
            continue
        values = []
        for word in (w.strip() for w in text.split(",")):
            try:
                values.append(kind(word))
            except ValueError:
                raise InputError(f"--{item.name.replace('_', '-')}: {word!r} is not {kind.__name__}") from None
        grid[item.name] = values
    return grid


def cmd_phantom(args) -> None:
    from AorticRootLandmarksLib.phantom import write_dataset

    manifest = write_dataset(
        args.out,
        args.n,
        seed=args.seed,
        fmt=args.format,
        size=args.size,
        preview=args.preview,
        force=args.force,
        style=args.style,
    )
    print(f"wrote {args.n} {args.style} case(s): {manifest}")


def cmd_detect(args) -> None:
    from AorticRootLandmarksLib.batch import detect_files, verdict_counts

    detections = detect_files(args.images, args.out, args.model, args.device, force=args.force,
                              accept_slice_gaps=args.accept_slice_gaps, stages=args.stages, plan=not args.no_plan,
                              tta=not args.no_tta)
    plans = "" if args.no_plan else ", plans (.plan.json, .plan.png) and index.html"
    print(f"wrote {len(detections)} detection(s) (.json and Slicer .mrk.json, LPS){plans} to {args.out}: "
          f"{verdict_counts(detections)}")
    if not args.no_plan:
        print(_disclaimer())
    failed = [name for name, d in detections.items() if d.verdict == "failed"]
    if failed:
        print(f"WARNING: no usable hinge points in {', '.join(failed)} (see 'quality' in the JSON); "
              "check the image, or give the root's position", file=sys.stderr)


def _disclaimer() -> str:
    from AorticRootLandmarksLib.plan import DISCLAIMER

    return DISCLAIMER


def cmd_plan(args) -> None:
    from AorticRootLandmarksLib.io import case_id
    from AorticRootLandmarksLib.plan import plan_files

    out = args.out or Path(f"{case_id(args.image)}-plan")
    plan = plan_files(args.image, args.landmarks, out, force=args.force, figure=not args.no_figure,
                      accept_slice_gaps=args.accept_slice_gaps)
    files = f"{plan.case}.plan.json" + ("" if args.no_figure else f" and {plan.case}.plan.png")
    print(f"wrote {files} to {out}\n{plan.summary()}\n{_disclaimer()}")


def _base_config(args, **fields):
    from training.config import TrainConfig

    if args.config:
        return TrainConfig.from_yaml(args.config, **fields)
    return TrainConfig.for_stage(fields.pop("stage", None) or "landmarks", **fields)


def cmd_train(args) -> None:
    from training.checkpoints import resume_config
    from training.train import train

    fields = {**config_overrides(args), "manifest": str(args.manifest), "out": str(args.out)}
    if args.resume and not args.config:  # the run's config.yaml, with the flags given on top (train checks them)
        config = resume_config(args.out, **fields)
    else:
        config = _base_config(args, **fields)
    run = train(config, force=args.force, command=shlex.join(["aortic-root", *sys.argv[1:]]), resume=args.resume)
    print(f"run folder: {run}\nmodel: {run / 'model'}")


def add_execution_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per field of training.sweep_spec.Execution (how a sweep runs); unset flags are None."""
    import typing

    from training.sweep_spec import Execution

    for item in dataclasses.fields(Execution):
        hint = typing.get_type_hints(Execution)[item.name]
        kind = next(a for a in typing.get_args(hint) if a is not type(None)) if typing.get_args(hint) else hint
        flag = "--" + item.name.replace("_", "-")
        text = item.metadata["help"] + ("" if item.default is None else f" (default: {item.default})")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            metavar = {"ray": "WHERE", "asha_grace": "EPOCHS"}.get(item.name, "N")
            parser.add_argument(flag, type=kind, metavar=metavar, help=text)


def cmd_sweep(args) -> None:
    from training.sweep import sweep
    from training.sweep_spec import Execution, is_spec, read_spec

    grid = sweep_grid(args)
    if is_spec(args.manifest):  # aortic-root sweep SPEC.yaml --out DIR
        if grid or args.config:
            raise InputError(f"{args.manifest}: a sweep spec holds the grid and the settings; give no --config "
                             "or setting flags with it")  # fmt: skip
        spec = read_spec(args.manifest)
        base, grid, execution = spec.base, spec.grid, spec.execution
    elif not grid:
        raise InputError("sweep: give at least one setting with comma-separated values, e.g. --loss glip,wce")
    else:
        base, execution = _base_config(args, manifest=str(args.manifest)), Execution()
    given = {item.name: getattr(args, item.name) for item in dataclasses.fields(Execution)}
    execution = dataclasses.replace(execution, **{k: v for k, v in given.items() if v is not None})
    summary = sweep(base, grid, args.out, force=args.force, resume=args.resume, execution=execution)
    print(f"sweep summary: {summary} and {summary.with_suffix('.png')}\n"
          f"results per loss (chosen by cross-validation, on the test split): {summary.parent / 'results.md'}")


def cmd_figures(args) -> None:
    from training.figures import figures

    index = figures(args.sweep_dir, args.out, force=args.force)
    print(f"figures (PNG and SVG) and their index: {index}")


def cmd_evaluate(args) -> None:
    from AorticRootLandmarksLib.evaluation import evaluate, format_table

    result = evaluate(args.pred_dir, args.manifest, args.out, args.landmarks, force=args.force)
    print(format_table(result))
    if args.out:
        print(f"per-case CSV, summary JSON and figure: {args.out}")


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(args.out, n=args.n, model=args.model, device=args.device, force=args.force)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=_existing, help="model or run folder (default: the bundled model)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    _add_force(p)


def _add_run_options(p: argparse.ArgumentParser, what: str, resume_help: str, source="dataset manifest CSV") -> None:
    """The options train and sweep share: manifest, output folder, config file, --force, --resume."""
    p.add_argument("manifest", type=_existing, help=source)
    p.add_argument("--out", type=Path, required=True, help=f"{what} folder")
    p.add_argument("--config", type=_existing, help="YAML config (keys: docs/train_config.yaml); flags override it")
    _add_force(p)
    p.add_argument("--resume", action="store_true", help=resume_help)


def _add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="replace an output folder that aortic-root wrote earlier")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aortic-root",
        description="Aortic valve hinge points (RCC, LCC, NCC) in CT: phantom data, training, detection, evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the main job in one command: phantom CTs -> detect (bundled model) -> evaluate")
    p.add_argument("--out", type=Path, default=Path("aortic-root-demo"), help="output folder (default: %(default)s)")
    p.add_argument("--n", type=int, default=3, help="number of phantom CTs (default: %(default)s)")
    _add_model_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("phantom", help="write synthetic contrast CTs of the aortic root with exact hinge points")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--n", type=int, required=True, help="number of cases")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: %(default)s)")
    p.add_argument("--format", choices=("nifti", "dicom"), default="nifti", help="image format (default: %(default)s)")
    p.add_argument("--size", choices=("small", "full"), default="full", help="CT size (default: %(default)s)")
    p.add_argument("--preview", action="store_true", help="also write a PNG preview per case")
    from AorticRootLandmarksLib.phantom.styles import STYLES  # the one home of the style names (a light import)

    p.add_argument(
        "--style",
        choices=list(STYLES),
        default="classic",
        help="family of CTs, see docs/PHANTOM.md (default: %(default)s)",
    )
    _add_force(p)
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("detect", help="detect hinge points in CT files or DICOM folders")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image file or DICOM series folder")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--accept-slice-gaps", action="store_true",
                   help="read a DICOM series with missing slices or uneven spacing instead of refusing it")
    p.add_argument("--stages", type=int, choices=(1, 2),
                   help="1: first stage only; 2: also refine each point on a full-resolution patch (the model must "
                        "have a second stage); default: every stage the model has")
    p.add_argument("--no-tta", action="store_true",
                   help="no test-time augmentation: run the first stage on one network grid instead of five shifted "
                        "by 4 mm (about 5x faster first stage; more far-off points on unusual CTs)")
    p.add_argument("--no-plan", action="store_true",
                   help="skip the plans (<case>.plan.json, <case>.plan.png) and index.html (saves ~0.6 s per case)")
    _add_model_options(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("plan", help="TAVI plan (annulus, coronary heights, C-arm views) from given landmarks")
    p.add_argument("image", type=Path, metavar="IMAGE", help="image file or DICOM series folder")
    p.add_argument("--landmarks", type=Path, required=True, metavar="FILE.mrk.json",
                   help="Slicer markups file with RCC, LCC, NCC (and optionally LCO, RCO), e.g. corrected points")
    p.add_argument("--out", type=Path, help="output folder (default: <case>-plan)")
    p.add_argument("--no-figure", action="store_true", help="write only <case>.plan.json, not the PNG figure")
    p.add_argument("--accept-slice-gaps", action="store_true",
                   help="read a DICOM series with missing slices or uneven spacing instead of refusing it")
    _add_force(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("train", help="train a fold ensemble with cross-validation and export it")
    _add_run_options(p, "run", "continue an interrupted run in --out from its checkpoints, with its saved config.yaml; "
                     "with --epochs above the saved number, extend the run (finished or not) to that many epochs")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="train one run per combination of settings, choose per loss, test the chosen")
    _add_run_options(p, "sweep", "continue an interrupted sweep in --out (same settings): skip finished runs",
                     "a sweep spec (.yaml: manifest, settings, grid; docs/sweep_example.yaml) or a dataset manifest "
                     "CSV with the grid as flags")  # fmt: skip
    add_sweep_flags(p)
    add_execution_flags(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("figures", help="the paper's figures from a sweep folder (PNG, SVG and index.md)")
    p.add_argument("sweep_dir", type=_existing, metavar="SWEEP_DIR", help="a folder written by aortic-root sweep")
    p.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR/figures)")
    _add_force(p)
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("evaluate", help="landmark errors, plane metrics and detection rates against a manifest")
    p.add_argument("pred_dir", type=_existing, metavar="PRED_DIR", help="folder of <case>.json from detect")
    p.add_argument("manifest", type=_existing, metavar="MANIFEST", help="dataset manifest CSV with the truth")
    p.add_argument("--out", type=Path, help="write per_case.csv, summary.json and errors.png here")
    p.add_argument("--landmarks", type=_names, default=list(DEFAULT_LANDMARKS),
                   help=f"comma-separated names (default: {','.join(DEFAULT_LANDMARKS)})")
    _add_force(p)
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as err:
        print(f"\nerror: {err}" if sys.stderr.isatty() else f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
