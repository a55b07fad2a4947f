"""Cross-validated training of the landmark U-Net (the paper's protocol) and export of the fold ensemble.

A run folder holds: config.yaml (the resolved config), split.json, fold<i>/{log.csv, best.pt, last.pt}, model/ (the
exported ensemble the Slicer module loads), and, when a test split exists, test_predictions/ and test_evaluation/.
"""

from __future__ import annotations

import csv
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from AorticRootLandmarksLib.batch import detect_files
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.inference import Ensemble, decode_peaks, predict_maps, resolve_device, save_model_dir
from AorticRootLandmarksLib.io import read_manifest, write_manifest
from AorticRootLandmarksLib.network import build_network as network_from_config

from .config import TrainConfig
from .data import LandmarkDataset, Sample, load_sample, split_cases
from .evaluate import evaluate, format_table
from .heatmaps import gaussian_heatmaps
from .losses import make_loss, output_activation

LOG_COLUMNS = ("epoch", "train_loss", "val_median_mm", "val_mean_mm", "val_max_mm", "seconds")


def _progress(iterable, **kwargs):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, **kwargs)


def build_network(config: TrainConfig):
    kwargs = {"architecture": config.architecture, "in_channels": 1, "out_channels": len(config.landmarks)}
    if config.features:
        kwargs["features"] = list(config.features)
    if config.restore_channels:
        kwargs["restore_channels"] = config.restore_channels
    return network_from_config(kwargs)


def predict_indices(network: torch.nn.Module, samples: list[Sample], config: TrainConfig, device) -> np.ndarray:
    """(N, K, 3) sub-voxel grid indices of the peaks `network` predicts on `samples` (the inference code path)."""
    model = Ensemble([network.eval()], {"activation": output_activation(config.loss)}, device)
    return np.stack([decode_peaks(predict_maps(model, s.volume)[0], config.decoding)[0] for s in samples])


def validation_errors(network, samples: list[Sample], config: TrainConfig, device) -> np.ndarray:
    """(N, K) Euclidean landmark errors in mm (the grid is isotropic and LPS-aligned, so index * spacing is mm)."""
    peaks = predict_indices(network, samples, config, device)
    truth = np.stack([s.landmarks_index for s in samples])
    return np.linalg.norm(peaks - truth, axis=-1) * config.spacing


def _save(state: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def train_fold(config: TrainConfig, train: list[Sample], val: list[Sample], folder: Path, device, fold: int = 0):
    """Train one model, keeping the checkpoint with the lowest validation median error.

    Returns:
        (network with the best weights loaded, best validation median mm).
    """
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed + fold)
    network = build_network(config).to(device, memory_format=torch.channels_last_3d)  # faster 3D convs on CPU
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    loss_fn = make_loss(config.loss, config.penalty, config.penalty_target)
    dataset = LandmarkDataset(
        train, config.augment, config.rotation_deg, config.translation_mm, config.intensity_jitter, config.seed + fold
    )
    generator = torch.Generator().manual_seed(config.seed + fold)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator)
    size = tuple(int(s) for s in config.size)
    best = float("inf")
    with (folder / "log.csv").open("w", newline="", encoding="utf-8") as handle:
        log = csv.writer(handle)
        log.writerow(LOG_COLUMNS)
        epochs = _progress(range(config.epochs), desc=f"fold {fold}", unit="epoch")
        try:
            for epoch in epochs:
                start, losses = time.perf_counter(), []
                dataset.epoch = epoch
                network.train()
                for step, (volume, points) in enumerate(loader):
                    if config.steps_per_epoch and step >= config.steps_per_epoch:
                        break
                    target = gaussian_heatmaps(size, points, config.sigma, config.spacing).to(device)
                    loss = loss_fn(network(volume.to(device, memory_format=torch.channels_last_3d)), target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
                errors = validation_errors(network, val, config, device)
                median = float(np.median(errors))
                row = [epoch, np.mean(losses), median, errors.mean(), errors.max(), time.perf_counter() - start]
                log.writerow([f"{v:.5g}" if isinstance(v, float) else v for v in row])
                handle.flush()
                _save(network.state_dict(), folder / "last.pt")
                if median < best:
                    best = median
                    _save(network.state_dict(), folder / "best.pt")
                if hasattr(epochs, "set_postfix"):
                    epochs.set_postfix(loss=f"{np.mean(losses):.3g}", val_median_mm=f"{median:.2f}", best=f"{best:.2f}")
        except KeyboardInterrupt:
            _save(network.state_dict(), folder / "last.pt")
            print(f"\ninterrupted: last weights saved to {folder / 'last.pt'}", file=sys.stderr)
            raise
    network.load_state_dict(torch.load(folder / "best.pt", map_location=device, weights_only=True))
    return network.eval(), best


def prepare_run_dir(path: str | Path, force: bool) -> Path:
    """Create the run folder; refuse an existing non-empty one unless `force` (then it is emptied)."""
    path = Path(path)
    if path.is_file():
        raise InputError(f"{path}: run folder is an existing file")
    if path.exists() and any(path.iterdir()):
        if not force:
            raise InputError(f"{path}: run folder exists and is not empty (use --force to replace it)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def train(config: TrainConfig, force: bool = False, command: str = "") -> Path:
    """Run the whole protocol: preprocess, split, train every fold, export the ensemble, predict the test split.

    Args:
        config: the run's configuration (saved as config.yaml in the run folder).
        force: replace an existing run folder.
        command: the command line that started the run, recorded in the exported model.

    Returns:
        The run folder.
    """
    config.validate()
    make_loss(config.loss, config.penalty, config.penalty_target)  # fail on a bad loss before any work
    cases = read_manifest(config.manifest, config.landmarks)
    split = split_cases(len(cases), config.folds, config.test_fraction, config.val_fraction, config.seed)
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = config.grid_spec
    cache = Path(config.cache_dir) if config.cache_dir else None
    samples = [load_sample(c, spec, cache) for c in _progress(cases, desc="preprocessing", unit="case")]
    run = prepare_run_dir(config.out, force)
    config.to_yaml(run / "config.yaml")
    named = {"test": [cases[i].case_id for i in split["test"]]}
    named["folds"] = [{k: [cases[i].case_id for i in v] for k, v in f.items()} for f in split["folds"]]
    (run / "split.json").write_text(json.dumps(named, indent=2), encoding="utf-8")

    networks, medians = [], []
    for fold, parts in enumerate(split["folds"]):
        network, best = train_fold(
            config, [samples[i] for i in parts["train"]], [samples[i] for i in parts["val"]], run / f"fold{fold}",
            device, fold,
        )
        networks.append(network.cpu())
        medians.append(best)

    export_model(run / "model", networks, config, cases, medians, command)
    if split["test"]:
        detect_files([cases[i].image for i in split["test"]], run / "test_predictions", run / "model", config.device)
        test_manifest = run / "test_manifest.csv"
        write_manifest(test_manifest, [cases[i] for i in split["test"]], config.landmarks)
        result = evaluate(run / "test_predictions", test_manifest, run / "test_evaluation", config.landmarks)
        print(format_table(result))
    return run


def export_model(folder: Path, networks, config: TrainConfig, cases, medians, command: str = "") -> Path:
    """Write the fold ensemble as a self-contained model folder (see docs/ARCHITECTURE.md)."""
    qualities = sorted({c.quality for c in cases if c.quality})
    meta = {
        "name": config.name,
        "landmarks": list(config.landmarks),
        "grid": config.grid_spec.to_dict(),
        "sigma_mm": config.sigma,
        "loss": config.loss,
        "penalty": config.penalty,
        "penalty_target": config.penalty_target,
        "activation": output_activation(config.loss),
        "decoding": config.decoding,
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
    return save_model_dir(folder, networks, meta)
