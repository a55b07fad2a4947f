"""Cross-validated training of the landmark U-Net (the paper's protocol) and export of the fold ensemble.

A run folder holds: config.yaml (the resolved config), split.json, fold<i>/{log.csv, last.pt, best.pt, done.json},
model/ (the exported ensemble the Slicer module loads), and, when a test split exists, test_predictions/ and
test_evaluation/.

A second-stage run (``--stage refine --from RUN``, training/patches.py) keeps the stage-1 run's split.json, trains
its folds on patches around the stage-1 run's out-of-fold points (written to stage1_predictions.json), and exports
model/ = the stage-1 model with the refiner in model/refine/: a complete two-stage model, evaluated as such on the
test split.

Checkpoints and resuming an interrupted run (``--resume``, also ``--resume --epochs N`` to extend a run): see
training/checkpoints.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from AorticRootLandmarksLib.batch import detect_files
from AorticRootLandmarksLib.constants import HINGE_NAMES
from AorticRootLandmarksLib.evaluation import evaluate_predictions, format_table, write_report
from AorticRootLandmarksLib.inference import (
    REFINER_FOLDER,
    Ensemble,
    attach_localizer,
    decode_peaks,
    find_model_dir,
    load_ensemble,
    predict_maps,
    resolve_device,
    save_model_dir,
)
from AorticRootLandmarksLib.io import Case, read_manifest, write_manifest
from AorticRootLandmarksLib.localize import root_from_landmarks
from AorticRootLandmarksLib.network import build_network as network_from_config
from AorticRootLandmarksLib.network import check_grid_size, landmark_maps
from AorticRootLandmarksLib.outputs import (
    atomic_output_dir,
    check_output_dir,
    replacing_dir,
)
from AorticRootLandmarksLib.progress import progress_bar

from . import patches
from .augment import AugmentOptions
from .checkpoints import (
    DONE,
    check_split,
    fold_finished,
    load_checkpoint,
    log_epoch,
    open_log,
    record_extension,
    resumed_config,
    run_finished,
    save_atomic,
    save_checkpoint,
    write_json,
)
from .config import TrainConfig
from .data import LandmarkDataset, Sample, check_cache_dir, load_sample, split_cases
from .heatmaps import gaussian_heatmaps
from .losses import make_loss, output_activation


def build_network(config: TrainConfig):
    kwargs = {"architecture": config.architecture, "in_channels": 1, "out_channels": len(config.target_names)}
    if config.features:
        kwargs["features"] = list(config.features)
    if config.restore_channels:
        kwargs["restore_channels"] = config.restore_channels
    kwargs.update(norm=config.norm, stem_stride=int(config.stem_stride))
    return network_from_config(kwargs)


def stream_seed(*parts: int) -> int:
    """A 32-bit seed of one random stream, e.g. ``(seed, fold, epoch)``: distinct tuples give independent streams.

    (``seed + fold`` would not: seed 0 fold 1 and seed 1 fold 0 would draw the same numbers.)
    """
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def predict_indices(network: torch.nn.Module, samples: list[Sample], config: TrainConfig, device) -> np.ndarray:
    """(N, K, 3) sub-voxel grid indices of the peaks `network` predicts on `samples` (the inference code path)."""
    model = Ensemble([network.eval()], {"activation": output_activation(config.loss)}, device)
    return np.stack([decode_peaks(predict_maps(model, s.volume)[0], config.decoding)[0] for s in samples])


def validation_errors(network, samples: list[Sample], config: TrainConfig, device) -> np.ndarray:
    """(N, K) Euclidean landmark errors in mm (the grid is isotropic and LPS-aligned, so index * spacing is mm);
    (N,) for a second stage, one per patch (patches.validation_errors)."""
    if config.stage == "refine":
        return patches.validation_errors(network, samples, config, device)
    peaks = predict_indices(network, samples, config, device)
    truth = np.stack([s.landmarks_index for s in samples])
    return np.linalg.norm(peaks - truth, axis=-1) * config.spacing


def _train_epoch(network, optimizer, loader, loss_fn, config: TrainConfig, device, epoch: int) -> list[float]:
    """Epoch `epoch`'s optimizer steps (at most ``steps_per_epoch``), at its learning rate; returns the losses."""
    for group in optimizer.param_groups:  # set every epoch: a resumed Adam state carries the rate it was saved with
        group["lr"] = config.learning_rate(epoch)
    size = tuple(int(s) for s in config.size)
    network.train()
    losses = []
    for batch in itertools.islice(loader, config.steps_per_epoch):
        volume, points = batch[0].to(device, memory_format=torch.channels_last_3d), batch[1]
        target = gaussian_heatmaps(size, points, config.sigma, config.spacing).to(device)
        # a second stage's batch also names each patch's landmark: its map alone is trained
        prediction = landmark_maps(network, volume, batch[2].to(device)) if len(batch) > 2 else network(volume)
        loss = loss_fn(prediction, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _finished_fold(config: TrainConfig, folder: Path, device):
    """(network with best.pt loaded, best validation median mm) of a fold that has its done.json."""
    network = build_network(config).to(device, memory_format=torch.channels_last_3d)
    network.load_state_dict(torch.load(folder / "best.pt", map_location=device, weights_only=True))
    done = json.loads((folder / DONE).read_text(encoding="utf-8"))
    return network.eval(), float(done["best_median_mm"])


def _seed_epoch(seed: int, fold: int, epoch: int, generator: torch.Generator, dataset: LandmarkDataset) -> None:
    """Seed everything random in an epoch from (seed, fold, epoch): an epoch redone after a kill draws the same."""
    epoch_seed = stream_seed(seed, fold, epoch)
    generator.manual_seed(epoch_seed)  # the loader's shuffle
    torch.manual_seed(epoch_seed)  # anything that draws from torch's global generator
    dataset.epoch = epoch  # the augmentation draws from (dataset seed, epoch, item)


def _shuffled_loader(config: TrainConfig, train: list[Sample], fold: int):
    """(dataset, its shuffle generator, loader); :func:`_seed_epoch` seeds both at the start of each epoch."""
    options = AugmentOptions.from_config(config) if config.augment else None
    if config.stage == "refine":
        dataset = patches.PatchDataset(train, config, options, stream_seed(config.seed, fold))
    else:
        dataset = LandmarkDataset(train, options, stream_seed(config.seed, fold))
    generator = torch.Generator()
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator)
    return dataset, generator, loader


def train_fold(
    config: TrainConfig, train: list[Sample], val: list[Sample], folder: Path, device, fold=0, resume=False,
    on_epoch=None,
):
    """Train one model, keeping the checkpoint with the lowest validation median error.

    With ``config.devices`` > 1 the fold is trained by that many processes together (training/distributed.py).

    Args:
        resume: continue from ``folder/last.pt`` if there is one; a finished fold (done.json) is loaded, not trained.
        on_epoch: called as ``on_epoch(fold, epoch, val_median_mm)`` after each epoch's checkpoint (a sweep's
            early stopping listens there).

    Returns:
        (network with the best weights loaded, best validation median mm).
    """
    if config.devices > 1:
        from .distributed import train_fold_distributed

        return train_fold_distributed(config, train, val, folder, device, fold, resume, on_epoch)
    folder.mkdir(parents=True, exist_ok=True)
    if resume and fold_finished(folder, config.epochs):
        return _finished_fold(config, folder, device)
    torch.manual_seed(stream_seed(config.seed, fold))
    network = build_network(config).to(device, memory_format=torch.channels_last_3d)  # faster 3D convs on CPU
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    state = {"epoch": -1, "steps": 0, "best_median": float("inf")}  # epoch: the last one completed
    if resume and (folder / "last.pt").is_file():
        state = load_checkpoint(folder / "last.pt", network, optimizer, device)
    loss_fn = make_loss(config.loss, config.penalty, config.penalty_target, config.ot_reduction)
    dataset, generator, loader = _shuffled_loader(config, train, fold)
    first = state["epoch"] + 1
    bar = {"desc": f"fold {fold}", "unit": "epoch", "initial": first, "total": config.epochs}
    epochs = progress_bar(range(first, config.epochs), **bar)
    with open_log(folder / "log.csv", first) as handle:
        try:
            for epoch in epochs:
                start = time.perf_counter()
                _seed_epoch(config.seed, fold, epoch, generator, dataset)
                losses = _train_epoch(network, optimizer, loader, loss_fn, config, device, epoch)
                errors = validation_errors(network, val, config, device)
                log_epoch(handle, epoch, losses, errors, time.perf_counter() - start)
                median = float(np.median(errors))
                if median < state["best_median"]:
                    save_atomic(network.state_dict(), folder / "best.pt")
                best = min(median, state["best_median"])
                state = {"epoch": epoch, "steps": state["steps"] + len(losses), "best_median": best}
                # last.pt is written last: a kill before it redoes the epoch (rewriting its log row and best.pt)
                save_checkpoint(folder, network, optimizer, state)
                if on_epoch is not None:
                    on_epoch(fold, epoch, median)
                if hasattr(epochs, "set_postfix"):
                    epochs.set_postfix(loss=f"{np.mean(losses):.3g}", val_median_mm=f"{median:.2f}")
        except KeyboardInterrupt:
            saved = f"{state['epoch'] + 1} finished epoch(s) in {folder / 'last.pt'}"
            print(f"\ninterrupted: fold {fold} has {saved}; --resume continues", file=sys.stderr)
            raise
    write_json({"best_median_mm": state["best_median"], "epochs": config.epochs}, folder / DONE)
    network.load_state_dict(torch.load(folder / "best.pt", map_location=device, weights_only=True))
    return network.eval(), state["best_median"]


def train(
    config: TrainConfig, force: bool = False, command: str = "", resume: bool = False, evaluate_test: bool = True,
    on_epoch=None,
) -> Path:
    """Run the whole protocol: preprocess, split, train every fold, export the ensemble, evaluate the test split.

    Args:
        config: the run's configuration (saved as config.yaml in the run folder).
        force: replace an existing run folder written by this tool (the old one is removed only on success).
        command: the command line that started the run, recorded in the exported model.
        resume: continue the interrupted run in ``config.out``, in place, with its saved config.yaml (see the module
            docstring). `config` may differ from it only in the :data:`HARMLESS` settings.
        evaluate_test: evaluate the test split at the end; a sweep says False and evaluates only the setting it
            chose by cross-validation (:func:`evaluate_test_split`), so the held-out cases judge nothing else.
        on_epoch: see :func:`train_fold`.

    Returns:
        The run folder.
    """
    config.validate()
    # fail on a bad loss before any work
    make_loss(config.loss, config.penalty, config.penalty_target, config.ot_reduction)
    check_grid_size(config.size, build_network(config).config())
    if resume:
        config = resumed_config(config, force)
        if run_finished(config.out, config):
            print(f"{config.out}: the run is complete; nothing to resume", file=sys.stderr)
            return Path(config.out)
    cases = training_targets(read_manifest(config.manifest, config.landmarks), config)
    inputs = [config.manifest, *([config.from_run] if config.from_run else [])]
    if not resume:
        check_output_dir(config.out, force, [*inputs, *(c.image for c in cases)])
    if config.stage == "refine":  # the stage-1 run's split: its test cases stay unseen by both stages
        split = patches.stage1_split(config.from_run, cases, config.folds)
    else:
        split = split_cases(len(cases), config.folds, config.test_fraction, config.val_fraction, config.seed)
    named = {"test": [cases[i].case_id for i in split["test"]]}
    named["folds"] = [{k: [cases[i].case_id for i in v] for k, v in f.items()} for f in split["folds"]]
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    cache = check_cache_dir(Path(config.cache_dir) if config.cache_dir else None)
    if config.stage == "refine":
        samples = patches.load_patch_samples(config, cases, split, cache, device)
    else:
        samples = [load_sample(c, config.grid_spec, cache, grid_center(c, config))
                   for c in progress_bar(cases, desc="preprocessing", unit="case")]
    if resume:
        run = Path(config.out)
        check_split(run / "split.json", named)
        record_extension(run, config)
        _run_protocol(run, config, cases, samples, split, device, command, True, evaluate_test, on_epoch)
        return run
    with replacing_dir(config.out, force, inputs) as run:
        config.to_yaml(run / "config.yaml")
        (run / "split.json").write_text(json.dumps(named, indent=2), encoding="utf-8")
        _run_protocol(run, config, cases, samples, split, device, command, False, evaluate_test, on_epoch)
    return run


def _run_protocol(
    run: Path, config: TrainConfig, cases, samples, split: dict, device, command: str, resume=False,
    evaluate_test=True, on_epoch=None,
):
    """Train (or finish, or load) every fold, export the ensemble, evaluate the test split (if `evaluate_test`)."""
    if config.stage == "refine":
        oof = patches.write_stage1_predictions(run / patches.STAGE1_FILE, samples, config)
        if oof["n"]:
            print(f"stage-1 out-of-fold points: median {oof['median_mm']:.2f} mm, p95 {oof['p95_mm']:.2f} mm over "
                  f"{oof['n']} (the second stage's validation median is to beat the first's)", file=sys.stderr)
    networks, medians = [], []
    for fold, parts in enumerate(split["folds"]):
        train_part, val_part = _part(samples, parts["train"]), _part(samples, parts["val"])
        folder = run / f"fold{fold}"
        network, best = train_fold(config, train_part, val_part, folder, device, fold, resume, on_epoch=on_epoch)
        networks.append(network.cpu())
        medians.append(best)
    export_model(run / "model", networks, config, cases, medians, command)
    if split["test"] and evaluate_test:
        evaluate_test_split(run, [cases[i] for i in split["test"]], config)


def _part(samples: list, positions: list[int]) -> list:
    """The samples of the cases at `positions`: one per case, or for a second stage one per case and landmark."""
    chosen = [samples[i] for i in positions]
    if chosen and isinstance(chosen[0], list):  # patches.load_patch_samples: per case a list, one per landmark
        return [s for group in chosen for s in group]
    return chosen


def evaluate_test_split(run: Path, test_cases: list, config: TrainConfig) -> dict:
    """Detect the test cases with the exported ensemble and evaluate them in memory.

    Writes ``test_manifest.csv``, ``test_predictions/`` (what ``aortic-root detect`` writes) and ``test_evaluation/``,
    each folder all or nothing (a resumed run replaces those an interrupted one left).
    """
    ensemble = load_ensemble(run / "model", config.device)
    detections = detect_files([c.image for c in test_cases], run / "test_predictions", ensemble, force=True)
    write_manifest(run / "test_manifest.csv", test_cases, config.target_names)
    # in config.target_names order (a second stage may refine fewer landmarks than its first stage detects)
    predictions = {name: d.positions_lps[[d.names.index(n) for n in config.target_names]]
                   for name, d in detections.items()}  # fmt: skip
    result = evaluate_predictions(predictions, test_cases, config.target_names)
    with atomic_output_dir(run / "test_evaluation", force=True) as folder:
        write_report(result, folder)
    print(format_table(result))
    return result


def training_targets(cases: list[Case], config: TrainConfig) -> list[Case]:
    """The cases with the landmarks the network learns: as read, or for a localizer the hinge-point centroid (ROOT)."""
    if config.stage != "localizer":
        return cases
    return [dataclasses.replace(c, landmarks_lps=root_from_landmarks(config.landmarks, c.landmarks_lps)[None])
            for c in cases]


def grid_center(case: Case, config: TrainConfig) -> np.ndarray | None:
    """Where a training grid is centred, world LPS mm: a localizer's on the image centre (None), as it runs at
    detection; a landmark model's on the aortic root (the hinge centroid, else the landmarks' mean), where detection
    puts it after the localizer or a seed point."""
    if config.stage == "localizer":
        return None
    names, points = config.landmarks, np.asarray(case.landmarks_lps, dtype=np.float64)
    return root_from_landmarks(names, points) if set(HINGE_NAMES) <= set(names) else points.mean(axis=0)


def export_model(folder: Path, networks, config: TrainConfig, cases, medians, command: str = "") -> Path:
    """Write the fold ensemble as a self-contained model folder (see docs/ARCHITECTURE.md)."""
    qualities = sorted({c.quality for c in cases if c.quality})
    meta = {
        "name": config.name,
        "stage": config.stage,
        "landmarks": config.target_names,
        "grid": config.grid_spec.to_dict(),
        "sigma_mm": config.sigma,
        "loss": config.loss,
        "penalty": config.penalty,
        "penalty_target": config.penalty_target,
        "activation": output_activation(config.loss),
        "decoding": config.decoding,
        "ensembling": config.ensembling,
        "network": networks[0].config(),
        "training": {
            "cases": len(cases),
            "qualities": qualities,
            "manifest": str(config.manifest),
            "epochs": config.epochs,
            "folds": config.folds,
            "validation_median_mm": [round(m, 3) for m in medians],
            "command": command,
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
        },
    }
    if config.stage == "refine":
        return _export_two_stages(folder, networks, meta, config)
    save_model_dir(folder, networks, meta)
    if config.localizer:
        attach_localizer(folder, config.localizer)
    return folder


def _export_two_stages(folder: Path, networks, meta: dict, config: TrainConfig) -> Path:
    """A second stage's model folder: the stage-1 run's model (with its localizer) and this refiner in refine/."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(find_model_dir(config.from_run), folder, ignore=shutil.ignore_patterns(REFINER_FOLDER))
    refiner_meta = {**meta, "disturbance_mm": config.disturbance_mm, "from_run": str(config.from_run)}
    oof = folder.parent / patches.STAGE1_FILE  # the first stage's out-of-fold error, to compare with the refiner's
    if oof.is_file():
        refiner_meta["training"]["stage1_out_of_fold"] = json.loads(oof.read_text(encoding="utf-8"))["summary"]
    save_model_dir(folder / REFINER_FOLDER, networks, refiner_meta)
    stage1 = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    write_json({**stage1, "refiner": REFINER_FOLDER}, folder / "model.json")
    return folder
