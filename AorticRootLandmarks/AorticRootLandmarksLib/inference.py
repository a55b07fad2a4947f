"""Load an exported U-Net ensemble, run it on a CT (CUDA when present, CPU otherwise), decode the landmark peaks.

torch is imported inside the functions that need it, so ``import AorticRootLandmarksLib`` works in a Slicer that has
not installed torch yet.

Frames: maps are (K, X, Y, Z) on the network grid; decoded peaks are grid indices (x, y, z) and world LPS mm.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .grid import GridSpec, NetworkGrid, make_grid, resample_to_grid
from .typing import GridIndex, PathLike, PointsLPS

MODEL_FORMAT_VERSION = 1
DECODINGS = ("argmax", "quadratic", "centroid")
#: Fold peaks further apart than this (RMS, in grid voxels) give confidence exp(-1/2) ~ 0.61.
CONFIDENCE_TOLERANCE_VOXELS = 2.0

Progress = Callable[[float, str], None]


def bundled_model_dir() -> Path:
    """The model shipped with the module (trained on phantom data; see its README.md)."""
    return Path(__file__).resolve().parent.parent / "Resources" / "Models" / "phantom-glip"


def resolve_device(device: str = "auto") -> Any:
    """'auto' -> CUDA if available else CPU; 'cpu'/'cuda'/'cuda:N' as given. Returns a torch.device."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available on this machine (use --device cpu or auto)")
    return torch.device(device)


@dataclass
class Ensemble:
    """Fold networks of one exported model and the metadata inference needs.

    Attributes:
        networks: the fold U-Nets, in eval mode on `device`.
        meta: model.json contents.
        device: torch.device the networks live on.
    """

    networks: list
    meta: dict
    device: Any

    @property
    def names(self) -> list[str]:
        return list(self.meta["landmarks"])

    @property
    def grid_spec(self) -> GridSpec:
        return GridSpec.from_dict(self.meta["grid"])

    @property
    def decoding(self) -> str:
        return self.meta.get("decoding", "argmax")


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
    """
    import torch

    from .network import build_network

    folder = find_model_dir(bundled_model_dir() if model_dir is None else model_dir)
    try:
        meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    except ValueError as err:
        raise InputError(f"{folder / 'model.json'}: not valid JSON ({err})") from None
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise InputError(f"{folder}: model format {meta.get('format_version')!r}, expected {MODEL_FORMAT_VERSION}")
    torch_device = resolve_device(device)
    networks = []
    for name in meta["folds"]:
        network = build_network(meta["network"])
        try:
            state = torch.load(folder / name, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as err:
            raise InputError(f"{folder / name}: cannot load weights ({err})") from None
        network.load_state_dict({k: v.float() for k, v in state.items()})
        # channels_last_3d: 1.1-2x faster 3D convolutions on CPU (benchmarks/bench_network.py)
        networks.append(network.to(torch_device, memory_format=torch.channels_last_3d).eval())
    return Ensemble(networks, meta, torch_device)


def save_model_dir(path: PathLike, networks: Sequence, meta: dict, half: bool = True) -> Path:
    """Write a self-contained model folder: model.json plus one state dict per fold (float16 by default, half size).

    `meta` must hold landmarks, grid (GridSpec.to_dict()), network (the network's config()); format_version and folds are
    filled in here.
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
                grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
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


@dataclass
class Detection:
    """Landmarks found in one CT.

    Attributes:
        names: K landmark names.
        positions_lps: (K, 3) world LPS mm.
        grid_indices: (K, 3) sub-voxel network-grid index (x, y, z).
        scores: (K,) ensemble-mean map value at the peak.
        confidence: (K,) in [0, 1], from the agreement of the fold models' peaks (1 with a single model).
        grid: the network grid used.
        device: where the networks ran.
        seconds: wall time of `detect`, reading excluded.
    """

    names: list[str]
    positions_lps: PointsLPS
    grid_indices: GridIndex
    scores: np.ndarray
    confidence: np.ndarray
    grid: NetworkGrid
    device: str
    seconds: float
    model: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-serialisable form, as written by ``aortic-root detect``."""
        landmarks = {
            name: {
                "position_lps": [round(float(v), 4) for v in self.positions_lps[k]],
                "grid_index": [round(float(v), 4) for v in self.grid_indices[k]],
                "score": float(self.scores[k]),
                "confidence": float(self.confidence[k]),
            }
            for k, name in enumerate(self.names)
        }
        return {
            "coordinate_system": "LPS",
            "units": "mm",
            "landmarks": landmarks,
            "grid": self.grid.to_dict(),
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "model": self.model,
        }


def fold_confidence(fold_peaks: np.ndarray, ensemble_peaks: np.ndarray) -> np.ndarray:
    """(F, K, 3) fold peaks and (K, 3) ensemble peaks, grid voxels -> (K,) confidence exp(-rms^2 / (2 tol^2))."""
    rms = np.sqrt(np.mean(np.sum((fold_peaks - ensemble_peaks[None]) ** 2, axis=-1), axis=0))
    return np.exp(-0.5 * (rms / CONFIDENCE_TOLERANCE_VOXELS) ** 2)


def detect(image: sitk.Image, ensemble: Ensemble, progress: Progress | None = None) -> Detection:
    """Detect the landmarks of one CT.

    Args:
        image: 3D CT in HU with its LPS geometry (from `io.read_image` or a Slicer volume node).
        ensemble: from `load_ensemble`.
        progress: optional callback(fraction in [0, 1], message), e.g. to keep a UI responsive.

    Returns:
        The Detection, positions in world LPS mm.

    Example:
        >>> ensemble = load_ensemble()                     # bundled model
        >>> detection = detect(read_image("ct.nii.gz"), ensemble)
        >>> dict(zip(detection.names, detection.positions_lps.round(1).tolist()))
    """
    start = time.perf_counter()
    if progress:
        progress(0.0, "resampling to the network grid")
    spec = ensemble.grid_spec
    grid = make_grid(image, spec)
    volume = resample_to_grid(image, grid, spec.window)
    maps = predict_maps(ensemble, volume, progress)
    if progress:
        progress(0.9, "decoding peaks")
    indices, scores = decode_peaks(maps.mean(axis=0), ensemble.decoding)
    fold_peaks = np.stack([decode_peaks(m, ensemble.decoding)[0] for m in maps])
    if progress:
        progress(1.0, "done")
    return Detection(
        names=ensemble.names,
        positions_lps=grid.index_to_world(indices),
        grid_indices=indices,
        scores=scores,
        confidence=fold_confidence(fold_peaks, indices),
        grid=grid,
        device=str(ensemble.device),
        seconds=time.perf_counter() - start,
        model={"name": ensemble.meta.get("name", ""), "folds": len(ensemble.networks)},
    )
