"""Load an exported U-Net ensemble, run it on a CT (CUDA when present, CPU otherwise), decode the landmark peaks.

torch is imported inside the functions that need it, so ``import AorticRootLandmarksLib`` works in a Slicer that has
not installed torch yet.

Frames: maps are (K, X, Y, Z) on the network grid; decoded peaks are grid indices (x, y, z) and world LPS mm.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .grid import GridSpec
from .typing import GridIndex, PathLike

MODEL_FORMAT_VERSION = 1
DECODINGS = ("argmax", "quadratic", "centroid")
ENSEMBLINGS = ("maps", "coordinates")
ACTIVATIONS = ("identity", "sigmoid")
DEVICES = "auto, cpu, cuda or cuda:N"
#: Fold peaks further apart than this (RMS, in grid voxels) give confidence exp(-1/2) ~ 0.61.
CONFIDENCE_TOLERANCE_VOXELS = 2.0
#: Sub-folder of a model folder that holds its second stage (model.json's "refiner" names it).
REFINER_FOLDER = "refine"

Progress = Callable[[float, str], None]


def bundled_model_dir() -> Path:
    """The model shipped with the module (trained on phantom data; see its README.md).

    In the Slicer module and an editable install it is ``AorticRootLandmarks/Resources/Models/phantom-glip``; a
    ``pip install .`` carries it as package data, ``AorticRootLandmarksLib/bundled_model``.
    """
    here = Path(__file__).resolve().parent
    installed = here / "bundled_model"
    return installed if (installed / "model.json").is_file() else here.parent / "Resources" / "Models" / "phantom-glip"


def resolve_device(device: str = "auto") -> Any:
    """'auto' -> CUDA if available else CPU; 'cpu'/'cuda'/'cuda:N' as given. Returns a torch.device.

    Raises:
        InputError: any other value, CUDA asked for where there is none, or N not below the number of CUDA devices.
    """
    import torch

    cuda = re.fullmatch(r"cuda(?::([0-9]+))?", device) if isinstance(device, str) else None
    if device not in ("auto", "cpu") and cuda is None:
        raise InputError(f"device {device!r}: unknown device; use {DEVICES} (N a CUDA device number)")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available on this machine (use --device cpu or auto)")
    count = torch.cuda.device_count()
    if cuda.group(1) is not None and int(cuda.group(1)) >= count:
        raise InputError(f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return torch.device(device if cuda.group(1) is None else f"cuda:{int(cuda.group(1))}")


@dataclass
class Ensemble:
    """Fold networks of one exported model and the metadata inference needs.

    Attributes:
        networks: the fold U-Nets, in eval mode on `device`.
        meta: model.json contents.
        device: torch.device the networks live on.
        localizer: the model's localizer (``localizer/``), which centres the grid on the root; None if it has none.
        refiner: the model's second stage (``refine/``), which refines each landmark on a full-resolution patch
            (refine.py); None if it has none. Its ``grid_spec`` is the patch (spacing, size, window).
    """

    networks: list
    meta: dict
    device: Any
    localizer: Ensemble | None = None
    refiner: Ensemble | None = None

    @property
    def names(self) -> list[str]:
        return list(self.meta["landmarks"])

    @property
    def grid_spec(self) -> GridSpec:
        return GridSpec.from_dict(self.meta["grid"])

    @property
    def qc_settings(self):
        """The quality-control constants calibrated for this model (``model.json["quality_control"]``, written by
        benchmarks/calibrate_qc.py), the defaults where absent: a `qc.QcSettings`.

        Raises:
            ValueError: the block has unknown keys or non-positive values.
        """
        from .qc.report import QcSettings  # here: qc imports this module

        return QcSettings.from_dict(self.meta.get("quality_control"), "quality_control")

    @property
    def decoding(self) -> str:
        return self.meta.get("decoding", "argmax")

    @property
    def ensembling(self) -> str:
        """How fold models are combined: "maps" (average the maps, then decode) or "coordinates" (decode each fold,
        average the positions, as the GLiP authors do)."""
        return self.meta.get("ensembling", "maps")


def find_model_dir(path: PathLike) -> Path:
    """Accept a model folder (holding model.json) or a training run folder (holding model/model.json)."""
    path = Path(path)
    for candidate in (path, path / "model"):
        if (candidate / "model.json").is_file():
            return candidate
    raise InputError(f"{path}: not a model folder (no model.json here or in model/)")


def load_ensemble(model_dir: PathLike | None = None, device: str = "auto") -> Ensemble:
    """Load every fold of an exported model.

    Args:
        model_dir: model folder or training run folder; None for the bundled model.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.

    Raises:
        InputError: an unknown device; a model.json that is not valid JSON, lacks a key or holds a wrong value, whose
            landmark count differs from the network's outputs or whose grid the network cannot take; a fold file that
            is missing, damaged, or holds weights of another network.
    """
    import torch

    from .network import build_network, check_grid_size

    folder = find_model_dir(bundled_model_dir() if model_dir is None else model_dir)
    meta_path = folder / "model.json"
    meta = _read_model_json(meta_path)
    torch_device = resolve_device(device)
    try:
        outputs = build_network(meta["network"]).config()["out_channels"]
    except (TypeError, ValueError) as err:
        raise InputError(f"{meta_path}: network config is not valid ({_short(err)})") from None
    if outputs != len(meta["landmarks"]):
        raise InputError(
            f"{meta_path}: {len(meta['landmarks'])} landmark names ({', '.join(meta['landmarks'])}) but the network "
            f"has {outputs} outputs"
        )
    check_grid_size(meta["grid"]["size"], meta["network"], where=str(meta_path))
    networks = []
    for name in meta["folds"]:
        network = build_network(meta["network"])
        network.load_state_dict(_read_weights(folder / name, network.state_dict()))
        # channels_last_3d: 1.1-2x faster 3D convolutions on CPU (benchmarks/bench_network.py)
        networks.append(network.to(torch_device, memory_format=torch.channels_last_3d).eval())
    localizer = refiner = None
    if meta.get("localizer"):
        localizer = load_ensemble(folder / str(meta["localizer"]), device)
        if localizer.localizer is not None or localizer.refiner is not None or len(localizer.names) != 1:
            raise InputError(f"{folder / str(meta['localizer'])}: a localizer has one landmark and no sub-models")
    if meta.get("refiner"):
        refiner = load_ensemble(folder / str(meta["refiner"]), device)
        if refiner.localizer is not None or refiner.refiner is not None:
            raise InputError(f"{folder / str(meta['refiner'])}: a refiner has no localizer or refiner of its own")
        unknown = sorted(set(refiner.names) - set(meta["landmarks"]))
        if unknown:
            raise InputError(f"{folder / str(meta['refiner'])}: refines {', '.join(unknown)}, which the model lacks")
    ensemble = Ensemble(networks, meta, torch_device, localizer, refiner)
    try:
        ensemble.qc_settings  # noqa: B018 (a model.json "quality_control" block must be valid)
    except ValueError as err:
        raise InputError(f"{meta_path}: {err}") from None
    return ensemble


def attach_localizer(model_dir: PathLike, localizer_dir: PathLike) -> Path:
    """Copy a trained localizer (model or run folder) into ``model_dir/localizer`` and name it in model.json.

    The landmark model then centres its grid where the localizer finds the root (detection.place_grid).
    """
    return _attach(model_dir, localizer_dir, "localizer")


def attach_refiner(model_dir: PathLike, refiner_dir: PathLike) -> Path:
    """Copy a trained second stage (model folder) into ``model_dir/refine`` and name it in model.json's "refiner".

    Detection then refines each landmark the refiner knows on a full-resolution patch (refine.py).
    """
    return _attach(model_dir, refiner_dir, "refiner", REFINER_FOLDER)


def _attach(model_dir: PathLike, source_dir: PathLike, key: str, name: str | None = None) -> Path:
    """Copy a sub-model into ``model_dir/<name>`` (without its own sub-models or notes) and set model.json[key]."""
    name = name or key
    folder = find_model_dir(model_dir)
    source = find_model_dir(source_dir)
    target = folder / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("localizer", REFINER_FOLDER, "*.md"))
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    meta[key] = name
    (folder / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def _read_model_json(path: Path) -> dict:
    """model.json, checked for every key and value that loading and inference use."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    except ValueError as err:
        raise InputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: not a model description (a JSON object is expected)")
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise InputError(f"{path.parent}: model format {meta.get('format_version')!r}, expected {MODEL_FORMAT_VERSION}")

    def names(value: Any) -> bool:
        return isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) and v for v in value)

    checks = {
        "landmarks": ("a non-empty list of names", names),
        "folds": ("a non-empty list of file names", names),
        "network": ("an object (the network's constructor arguments)", lambda v: isinstance(v, dict)),
        "grid": ("an object with spacing > 0, size (3 positive integers) and window (low < high HU)", _valid_grid),
        "decoding": (f"one of {', '.join(DECODINGS)}", lambda v: v in DECODINGS),
        "activation": (f"one of {', '.join(ACTIVATIONS)}", lambda v: v in ACTIVATIONS),
    }
    optional = {"decoding", "activation"}
    for key, (expected, valid) in checks.items():
        if key not in meta and key not in optional:
            raise InputError(f"{path}: lacks the key {key!r}")
        if key in meta and not valid(meta[key]):
            raise InputError(f"{path}: {key} must be {expected}, got {_brief(meta[key])}")
    return meta


def _valid_grid(grid: Any) -> bool:
    try:
        spec = GridSpec.from_dict(grid)
        window = [float(v) for v in spec.window]
    except (KeyError, TypeError, ValueError):
        return False
    return (
        math.isfinite(spec.spacing)
        and spec.spacing > 0
        and len(spec.size) == 3
        and min(spec.size) > 0
        and len(window) == 2
        and all(math.isfinite(v) for v in window)
        and window[0] < window[1]
    )


def _read_weights(path: Path, expected: dict) -> dict:
    """A fold's state dict as float32 tensors, checked against the network's own (`expected`) key by key."""
    import torch

    if not path.is_file():
        raise InputError(f"{path}: fold file not found (model.json lists it)")
    try:
        with warnings.catch_warnings():  # e.g. about the pickle protocol of a damaged file: a second stderr line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many kinds (pickle, zip, EOF, runtime) for a damaged file
        raise InputError(f"{path}: cannot load weights, the file is damaged or truncated ({_short(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a state dict of tensors (a dictionary of weights is expected)")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or reshaped:
        example = (
            f"{reshaped[0]} is {tuple(state[reshaped[0]].shape)}, the network's {tuple(expected[reshaped[0]].shape)}"
            if reshaped
            else f"e.g. {(missing or unexpected)[0]}"
        )
        raise InputError(
            f"{path}: weights do not match the network in model.json ({len(missing)} missing, {len(unexpected)} "
            f"unexpected, {len(reshaped)} of another shape; {example})"
        )
    return {k: v.float() for k, v in state.items()}


def _short(err: Exception, limit: int = 120) -> str:
    """First sentence of an exception's first line (torch's messages go on for lines), at most `limit` characters."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = re.split(r"(?<=\.) ", lines[0], maxsplit=1)[0] if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _brief(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def save_model_dir(path: PathLike, networks: Sequence, meta: dict, half: bool = True) -> Path:
    """Write a self-contained model folder: model.json plus one state dict per fold (float16 by default, half size).

    `meta` must hold landmarks, grid (GridSpec.to_dict()), network (the network's config()); format_version and folds
    are filled in here.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    import torch

    files = []
    for i, network in enumerate(networks):
        state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in network.state_dict().items()}
        torch.save(state, folder / f"fold{i}.pt")
        files.append(f"fold{i}.pt")
    meta = {**meta, "format_version": MODEL_FORMAT_VERSION, "folds": files}
    (folder / "model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def predict_maps(ensemble: Ensemble, volume: np.ndarray, progress: Progress | None = None) -> np.ndarray:
    """Run every fold on one network-grid volume.

    Args:
        volume: (X, Y, Z) float32 in [0, 1] from `grid.resample_to_grid`.

    Returns:
        (F, K, X, Y, Z) float32 maps, one per fold, in the model's decoding space (raw critic for GLiP/OT,
        sigmoid probabilities for the baselines).
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    x = x.to(ensemble.device, memory_format=torch.channels_last_3d)
    sigmoid = ensemble.meta.get("activation", "identity") == "sigmoid"
    maps = []
    with torch.inference_mode():
        for i, network in enumerate(ensemble.networks):
            if progress:
                progress(0.2 + 0.7 * i / len(ensemble.networks), f"network {i + 1} of {len(ensemble.networks)}")
            out = network(x)[0]
            maps.append((torch.sigmoid(out) if sigmoid else out).float().cpu().numpy())
    return np.stack(maps)


def predict_patch_maps(ensemble: Ensemble, patches: np.ndarray, landmarks: Sequence[int]) -> np.ndarray:
    """Run every fold of a refiner on patches, each for its own landmark (`network.landmark_maps`).

    Args:
        patches: (B, X, Y, Z) float32 in [0, 1] from `grid.resample_patch`, patch b cut around landmark landmarks[b].
        landmarks: (B,) index of each patch's landmark in ``ensemble.names``.

    Returns:
        (F, B, X, Y, Z) float32 maps in the model's decoding space (see `predict_maps`).
    """
    import torch

    from .network import landmark_maps

    x = torch.from_numpy(np.ascontiguousarray(patches, dtype=np.float32))[:, None]
    x = x.to(ensemble.device, memory_format=torch.channels_last_3d)
    which = torch.as_tensor(np.asarray(landmarks, dtype=np.int64), device=ensemble.device)
    sigmoid = ensemble.meta.get("activation", "identity") == "sigmoid"
    maps = []
    with torch.inference_mode():
        for network in ensemble.networks:
            out = landmark_maps(network, x, which)[:, 0]
            maps.append((torch.sigmoid(out) if sigmoid else out).float().cpu().numpy())
    return np.stack(maps)


def decode_peaks(maps: np.ndarray, method: str = "argmax") -> tuple[GridIndex, np.ndarray]:
    """Find each map's peak.

    Args:
        maps: (K, X, Y, Z) one map per landmark.
        method: 'argmax' (voxel centre), 'quadratic' (per-axis parabola through the peak and its two neighbours,
            offset clamped to +-0.5 voxel), or 'centroid' (centre of mass of the 3x3x3 neighbourhood above its minimum).

    Returns:
        (K, 3) grid index (x, y, z), sub-voxel for the refined methods; (K,) map value at the peak voxel.
    """
    if method not in DECODINGS:
        raise ValueError(f"unknown decoding {method!r}; choose from {DECODINGS}")
    maps = np.asarray(maps)
    size = np.array(maps.shape[1:])
    peaks = np.zeros((maps.shape[0], 3))
    scores = np.zeros(maps.shape[0])
    for k, volume in enumerate(maps):
        voxel = np.array(np.unravel_index(int(np.argmax(volume)), volume.shape))
        scores[k] = float(volume[tuple(voxel)])
        peaks[k] = voxel
        if method == "argmax":
            continue
        lo, hi = np.maximum(voxel - 1, 0), np.minimum(voxel + 2, size)
        patch = volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float64)
        if method == "centroid":
            weights = patch - patch.min()
            if weights.sum() > 0:
                grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
                peaks[k] = [float((g * weights).sum() / weights.sum()) for g in grids]
            continue
        for axis in range(3):
            if voxel[axis] == 0 or voxel[axis] == size[axis] - 1:
                continue
            before, after = voxel.copy(), voxel.copy()
            before[axis] -= 1
            after[axis] += 1
            f_minus, f_zero, f_plus = volume[tuple(before)], volume[tuple(voxel)], volume[tuple(after)]
            curvature = f_minus - 2 * f_zero + f_plus
            if curvature < 0:
                peaks[k, axis] += float(np.clip(0.5 * (f_minus - f_plus) / curvature, -0.5, 0.5))
    return peaks, scores


def fold_spread(positions: np.ndarray, fold_positions: np.ndarray) -> np.ndarray:
    """(K,) RMS distance of the fold positions (F, K, 3) from the ensemble positions (K, 3), in their units
    (grid voxels or world mm: both arrays in the same frame)."""
    positions, folds = np.asarray(positions, dtype=np.float64), np.asarray(fold_positions, dtype=np.float64)
    return np.sqrt(np.mean(np.sum((folds - positions[None]) ** 2, axis=-1), axis=0))


def combine_folds(
    maps: np.ndarray, decoding: str, ensembling: str = "maps"
) -> tuple[GridIndex, np.ndarray, np.ndarray]:
    """The ensemble's peaks from the fold maps.

    Args:
        maps: (F, K, X, Y, Z) fold maps on the network grid.
        decoding: peak decoding (inference.DECODINGS).
        ensembling: "maps": decode the mean map; "coordinates": average the folds' decoded peaks (the authors' way).

    Returns:
        (K, 3) ensemble grid index, (K,) mean-map value at the ensemble peak's voxel, (F, K, 3) fold grid indices.
    """
    if ensembling not in ENSEMBLINGS:
        raise ValueError(f"unknown ensembling {ensembling!r}; choose from {ENSEMBLINGS}")
    mean_map = maps.mean(axis=0)
    fold_peaks = np.stack([decode_peaks(m, decoding)[0] for m in maps])
    indices, scores = decode_peaks(mean_map, decoding)
    if ensembling == "coordinates":
        indices = fold_peaks.mean(axis=0)
        voxel = np.clip(np.rint(indices).astype(int), 0, np.array(mean_map.shape[1:]) - 1)
        scores = np.array([mean_map[k][tuple(v)] for k, v in enumerate(voxel)])
    return indices, scores, fold_peaks
