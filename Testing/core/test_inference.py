"""inference: peak decoding on Gaussians at known sub-voxel positions, model folders, detection on a CT."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import make_image

from AorticRootLandmarksLib import qc
from AorticRootLandmarksLib.detection import detect, fold_confidence
from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.grid import GridSpec
from AorticRootLandmarksLib.inference import Ensemble, decode_peaks, load_ensemble, resolve_device


def gaussian(shape, centre, sigma):
    grids = np.indices(shape).astype(float)
    d2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return np.exp(-d2 / (2 * sigma**2))


SLOPE = 1 / np.sqrt(3)


def cone(shape, centre, slope=SLOPE):
    """What a GLiP critic converges to: f = -slope * distance (a Lipschitz cone peaking at the landmark)."""
    grids = np.indices(shape).astype(float)
    return -slope * np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)))


@pytest.fixture(scope="module")
def subvoxel_centres():
    rng = np.random.default_rng(1)
    return 10 + rng.uniform(-0.5, 0.5, size=(50, 3))


@pytest.mark.parametrize("make, sigma", [(gaussian, 0.625), (gaussian, 1.25), (cone, None)])
def test_refined_decoding_beats_argmax(subvoxel_centres, make, sigma):
    """sigma 0.625 voxel = 1 mm on the 1.6 mm grid (the paper's best); the cone is a GLiP-like map."""
    errors = {m: [] for m in ("argmax", "quadratic", "centroid")}
    for centre in subvoxel_centres:
        volume = make((21, 21, 21), centre, sigma) if sigma else make((21, 21, 21), centre)
        for method in errors:
            peak, _ = decode_peaks(volume[None], method)
            errors[method].append(np.linalg.norm(peak[0] - centre))
    mean = {m: float(np.mean(e)) for m, e in errors.items()}
    # argmax is off by up to half a voxel per axis: about 0.43 voxel on average for uniform offsets
    assert 0.3 < mean["argmax"] < 0.55
    # both refinements beat argmax on every map shape; "centroid" (the default) also wins on the phantom test set
    assert mean["quadratic"] < 0.6 * mean["argmax"], mean
    assert mean["centroid"] < 0.6 * mean["argmax"], mean


def test_decode_peaks_integer_and_edges():
    volume = np.zeros((2, 5, 6, 7))
    volume[0, 1, 2, 3] = 1.0
    volume[1, 0, 5, 6] = 2.0  # at the border: no neighbour on one side, no refinement there
    peaks, scores = decode_peaks(volume, "quadratic")
    np.testing.assert_allclose(peaks, [[1, 2, 3], [0, 5, 6]])
    np.testing.assert_allclose(scores, [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown decoding"):
        decode_peaks(volume, "softmax")


def parabola(shape, centre):
    """f = -|index - centre|^2: along each axis a parabola, which the 'quadratic' decoding fits exactly.

    With a = centre - v (v the peak voxel) on one axis: f(v-1) = -(1+a)^2, f(v) = -a^2, f(v+1) = -(1-a)^2 (plus the
    same other-axis terms), so curvature f(v-1) - 2 f(v) + f(v+1) = -2 and f(v-1) - f(v+1) = -4a; the offset
    0.5 * (-4a) / (-2) = a puts the peak back at the centre exactly.
    """
    grids = np.indices(shape).astype(float)
    return -sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))


def lopsided_patch(shape=(11, 11, 11)):
    """Background 10, peak 14 at (5, 5, 5), 12 at (6, 5, 5) and at (5, 4, 5).

    The 3x3x3 patch minus its minimum (10) weighs 4 at (5, 5, 5) and 2 at each neighbour, total 8:
    x = (5*4 + 6*2 + 5*2) / 8 = 42/8 = 5.25, y = (5*4 + 5*2 + 4*2) / 8 = 38/8 = 4.75, z = 5.
    """
    volume = np.full(shape, 10.0)
    volume[5, 5, 5] = 14.0
    volume[6, 5, 5] = 12.0
    volume[5, 4, 5] = 12.0
    return volume


@pytest.mark.parametrize(
    "method, volume, peak, score",
    [
        # nearest voxel to (5.3, 4.8, 6.1) is (5, 5, 6); value there -(0.3^2 + 0.2^2 + 0.1^2) = -0.14
        pytest.param("argmax", parabola((11, 11, 11), (5.3, 4.8, 6.1)), (5.0, 5.0, 6.0), -0.14, id="argmax-parabola"),
        pytest.param(
            "quadratic", parabola((11, 11, 11), (5.3, 4.8, 6.1)), (5.3, 4.8, 6.1), -0.14, id="quadratic-parabola"
        ),
        # offsets of -0.45 / +0.45 (peak voxel 3 and 7) on a non-cubic grid
        pytest.param(
            "quadratic",
            parabola((9, 10, 12), (2.55, 7.45, 6.0)),
            (2.55, 7.45, 6.0),
            -(0.45**2 + 0.45**2),
            id="quadratic-offsets-near-half",
        ),
        pytest.param("argmax", lopsided_patch(), (5.0, 5.0, 5.0), 14.0, id="argmax-lopsided"),
        pytest.param("centroid", lopsided_patch(), (5.25, 4.75, 5.0), 14.0, id="centroid-lopsided"),
    ],
)
def test_decode_peaks_at_known_subvoxel_positions(method, volume, peak, score):
    peaks, scores = decode_peaks(volume[None], method)
    np.testing.assert_allclose(peaks, [peak], rtol=0, atol=1e-9)
    np.testing.assert_allclose(scores, [score], rtol=0, atol=1e-9)


def test_decode_peaks_each_map_on_its_own():
    # two landmarks: the peaks of map 0 and map 1 are not mixed up (their order is the landmarks' order)
    maps = np.stack([parabola((8, 8, 8), (1.2, 6.3, 4.0)), parabola((8, 8, 8), (5.6, 2.0, 2.7))])
    peaks, _ = decode_peaks(maps, "quadratic")
    np.testing.assert_allclose(peaks, [[1.2, 6.3, 4.0], [5.6, 2.0, 2.7]], rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "offsets, expected",
    [
        # all folds on the ensemble peak: rms 0 -> exp(0) = 1
        pytest.param([[0, 0, 0]] * 4, 1.0, id="agree"),
        # four folds 2 voxels away: rms 2 -> exp(-4/8) = exp(-0.5)
        pytest.param([[2, 0, 0], [-2, 0, 0], [0, 2, 0], [0, -2, 0]], 0.6065306597126334, id="rms-2"),
        # distances 1 and 3: mean square 5, rms sqrt(5) -> exp(-5/8) (the mean distance, 2, would give exp(-0.5))
        pytest.param([[1, 0, 0], [0, 0, -3]], 0.5352614285189903, id="rms-not-mean"),
        # one fold at (1, 2, 2): distance sqrt(1 + 4 + 4) = 3 -> exp(-9/8) (the components add up, not average)
        pytest.param([[1, 2, 2]], 0.32465246735834974, id="3d-distance"),
    ],
)
def test_fold_confidence(offsets, expected):
    ensemble = np.array([[10.0, 20.0, 30.0], [4.0, 5.0, 6.0]])  # (K=2, 3) grid voxels, away from the origin
    offsets = np.asarray(offsets, float)
    # landmark 0: folds at the given offsets from its ensemble peak; landmark 1: every fold exactly on its peak
    fold_peaks = np.stack([ensemble + np.array([offset, [0.0, 0.0, 0.0]]) for offset in offsets])  # (F, K, 3)
    np.testing.assert_allclose(fold_confidence(fold_peaks, ensemble), [expected, 1.0], rtol=1e-12, atol=0)


def test_detect_returns_world_positions_on_the_grid(tiny_model_dir):
    ensemble = load_ensemble(tiny_model_dir, "cpu")
    assert ensemble.names == ["RCC", "LCC", "NCC"] and len(ensemble.networks) == 2
    image = make_image(size=(40, 40, 40), spacing=(2.0, 2.0, 2.0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1))
    detection = detect(image, ensemble)
    assert detection.positions_lps.shape == (3, 3)
    # image centre: index 19.5 -> (10 - 39, -20 + 39, 30 - 39) = (-29, 19, -9) (x and z flipped); the 32-voxel grid
    # of 3.2 mm starts 15.5 * 3.2 = 49.6 mm below it on every axis
    np.testing.assert_allclose(detection.grid.origin, [-78.6, -30.6, -58.6], rtol=0, atol=1e-9)
    # the random weights put the peaks anywhere, but on the grid
    assert np.all(detection.grid.contains(detection.positions_lps))
    assert np.all((detection.confidence >= 0) & (detection.confidence <= 1))
    again = detect(image, ensemble)
    np.testing.assert_array_equal(again.positions_lps, detection.positions_lps)  # deterministic
    record = detection.to_dict()
    assert record["coordinate_system"] == "LPS" and set(record["landmarks"]) == {"RCC", "LCC", "NCC"}
    json.dumps(record)


def test_detect_with_known_maps():
    """detect end to end with fold maps whose peaks are known, so positions and confidence are known by hand.

    Image: make_image's geometry, size 40^3, 2 mm, origin (10, -20, 30), x and z flipped: centre (-29, 19, -9).
    Grid: 8^3 voxels of 4 mm centred there, origin (-29, 19, -9) - 3.5 * 4 = (-43, 5, -23).
    Landmark A: the three folds are parabolas peaking at m - d, m + d and m, with m = (2.25, 4.75, 3.4) and
    d = (1.2, 1.6, 0) (|d| = 2). Their mean is -|x - m|^2 - (4 + 4 + 0) / 3, a parabola peaking at m, so the ensemble
    index is m and its world position (-43, 5, -23) + 4 m = (-34, 24, -9.4); the score is the mean map at voxel
    (2, 5, 3): -(0.25^2 + 0.25^2 + 0.4^2 + 8/3) = -(0.285 + 8/3). The folds are 2, 2 and 0 voxels from m:
    rms sqrt(8/3), confidence exp(-(8/3) / 8) = exp(-1/3) (any two folds alone would give another number).
    Landmark B: every fold peaks at (5.2, 2.6, 6.0): world (-43 + 20.8, 5 + 10.4, -23 + 24) = (-22.2, 15.4, 1.0),
    score at voxel (5, 3, 6): -(0.2^2 + 0.4^2) = -0.2, confidence 1.
    """
    torch = pytest.importorskip("torch")

    class FixedMaps(torch.nn.Module):
        """A stand-in fold network: whatever the input, returns the given (K, X, Y, Z) maps as (1, K, X, Y, Z)."""

        def __init__(self, maps):
            super().__init__()
            self.maps = torch.from_numpy(np.asarray(maps, np.float32))

        def forward(self, x):
            assert tuple(x.shape) == (1, 1, 8, 8, 8)  # the resampled CT, on the network grid
            return self.maps[None]

    m, d, b = np.array([2.25, 4.75, 3.4]), np.array([1.2, 1.6, 0.0]), np.array([5.2, 2.6, 6.0])
    folds = [
        FixedMaps([parabola((8, 8, 8), m - d), parabola((8, 8, 8), b)]),
        FixedMaps([parabola((8, 8, 8), m + d), parabola((8, 8, 8), b)]),
        FixedMaps([parabola((8, 8, 8), m), parabola((8, 8, 8), b)]),
    ]
    meta = {
        "landmarks": ["A", "B"],
        "grid": GridSpec(spacing=4.0, size=(8, 8, 8)).to_dict(),
        "activation": "identity",
        "decoding": "quadratic",
    }
    ensemble = Ensemble(folds, meta, torch.device("cpu"))
    image = make_image(size=(40, 40, 40), spacing=(2.0, 2.0, 2.0), direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1))
    detection = detect(image, ensemble)
    assert detection.names == ["A", "B"]
    np.testing.assert_allclose(detection.grid.origin, [-43.0, 5.0, -23.0], rtol=0, atol=1e-9)
    # float32 maps: 1e-4 voxel, 4e-4 mm
    np.testing.assert_allclose(detection.grid_indices, [[2.25, 4.75, 3.4], [5.2, 2.6, 6.0]], rtol=0, atol=1e-4)
    np.testing.assert_allclose(detection.positions_lps, [[-34.0, 24.0, -9.4], [-22.2, 15.4, 1.0]], rtol=0, atol=1e-3)
    np.testing.assert_allclose(detection.scores, [-(0.285 + 8 / 3), -0.2], rtol=0, atol=1e-5)
    np.testing.assert_allclose(detection.fold_agreement, [0.7165313105737893, 1.0], rtol=0, atol=1e-4)


def test_load_ensemble_errors(tmp_path, tiny_model_dir):
    with pytest.raises(InputError, match="not a model folder"):
        load_ensemble(tmp_path)
    (tmp_path / "model.json").write_text("{", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_ensemble(tmp_path)
    meta = json.loads((tiny_model_dir / "model.json").read_text(encoding="utf-8"))
    (tmp_path / "model.json").write_text(json.dumps({**meta, "format_version": 99}), encoding="utf-8")
    with pytest.raises(InputError, match="model format"):
        load_ensemble(tmp_path)


# --- bad devices and damaged model folders: one line naming the value or file ---


@pytest.mark.parametrize("device", ["gpu0", "GPU", "CPU", " cpu", "", "cuda:", "cuda:-1", "cuda:x", "cuda:1.0", "tpu",
                                    "mps", "cuda0", None])
def test_resolve_device_refuses_unknown_values(device):
    pytest.importorskip("torch")
    expected = f"device {device!r}: unknown device; use auto, cpu, cuda or cuda:N"
    with pytest.raises(InputError, match=re.escape(expected)):
        resolve_device(device)


def test_resolve_device_checks_the_cuda_index(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with two CUDA devices
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(InputError, match=r"device 'cuda:2': this machine has 2 CUDA device\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="device 'cuda:0': CUDA is not available"):
        resolve_device("cuda:0")
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("auto") == torch.device("cpu")


@pytest.fixture
def model_copy(tmp_path, tiny_model_dir):
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def _edit_model_json(folder, change):
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    change(meta)
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")


def _load_error(folder) -> str:
    with pytest.raises(InputError) as error:
        load_ensemble(folder, "cpu")
    message = str(error.value)
    assert "\n" not in message and len(message) < 300, message
    return message


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"", id="empty"),  # EOFError
        pytest.param(lambda data: data[:500], id="first-500-bytes"),  # zip without its central directory
        pytest.param(lambda data: data[: len(data) // 2], id="half"),
        pytest.param(lambda data: data[:-10], id="last-10-bytes-cut"),
        pytest.param(lambda data: b"\x80\x04garbage" * 100, id="garbage"),  # UnpicklingError
    ],
)
def test_load_ensemble_refuses_a_damaged_fold(model_copy, damage):
    fold = model_copy / "fold0.pt"
    fold.write_bytes(damage(fold.read_bytes()))
    message = _load_error(model_copy)
    assert message.startswith(f"{fold}: cannot load weights, the file is damaged or truncated"), message
    assert "weights_only" not in message  # torch's advice to unpickle untrusted code is not passed on


def test_load_ensemble_damaged_fold_prints_no_warning(model_copy, recwarn):
    (model_copy / "fold0.pt").write_bytes(b"\x80\x04garbage" * 100)  # torch warns about the pickle protocol
    _load_error(model_copy)
    assert not recwarn.list, [str(w.message) for w in recwarn.list]  # a warning is a second line on stderr


def test_load_ensemble_refuses_a_missing_fold(model_copy):
    (model_copy / "fold1.pt").unlink()
    assert _load_error(model_copy) == f"{model_copy / 'fold1.pt'}: fold file not found (model.json lists it)"


def test_load_ensemble_refuses_landmarks_that_do_not_match_the_outputs(model_copy):
    _edit_model_json(model_copy, lambda meta: meta.update(landmarks=["RCC", "LCC"]))  # the weights have 3 outputs
    assert _load_error(model_copy) == (
        f"{model_copy / 'model.json'}: 2 landmark names (RCC, LCC) but the network has 3 outputs"
    )


@pytest.mark.parametrize(
    "network, expected",
    [
        # 2 landmarks and 2 outputs agree, but the weights' head has 3: head.weight and head.bias differ
        ({"out_channels": 2}, "0 missing, 0 unexpected, 2 of another shape; head.bias is (3,), the network's (2,)"),
        # one level more: the 4th level's tensors are missing from the weights
        ({"features": [4, 8, 16, 32]}, "14 missing, 0 unexpected, 0 of another shape; e.g. downs.2.1.0.weight"),
    ],
)
def test_load_ensemble_refuses_weights_of_another_network(model_copy, network, expected):
    def change(meta):
        meta["network"].update(network)
        if network.get("out_channels") == 2:
            meta["landmarks"] = ["RCC", "LCC"]

    _edit_model_json(model_copy, change)
    assert _load_error(model_copy) == (
        f"{model_copy / 'fold0.pt'}: weights do not match the network in model.json ({expected})"
    )


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda m: m.pop("folds"), "lacks the key 'folds'"),
        (lambda m: m.pop("network"), "lacks the key 'network'"),
        (lambda m: m.update(landmarks="RCC"), "landmarks must be a non-empty list of names, got 'RCC'"),
        (lambda m: m.update(landmarks=[]), "landmarks must be a non-empty list of names"),
        (lambda m: m.update(folds=[0]), "folds must be a non-empty list of file names, got [0]"),
        (lambda m: m.update(network=[4, 8]), "network must be an object"),
        (lambda m: m["grid"].update(spacing=0), "grid must be an object with spacing > 0"),
        (lambda m: m["grid"].pop("window"), "grid must be an object"),
        (lambda m: m["grid"].update(size=[32, 32]), "grid must be an object"),
        (lambda m: m.update(decoding="softmax"), "decoding must be one of argmax, quadratic, centroid"),
        (lambda m: m.update(activation="relu"), "activation must be one of identity, sigmoid"),
        (lambda m: m["network"].update(norm="group"), "network config is not valid (UNet3D: norm 'group'"),
        (lambda m: m["network"].update(colour="red"), "network config is not valid"),
        (lambda m: m.update(quality_control={"fold_half": 3}), "quality_control: unknown setting(s) fold_half"),
        (lambda m: m.update(quality_control={"shift_half_mm": -1}), "shift_half_mm = -1 is not a positive number"),
        # the U-Net halves the grid 3 times (stem stride 2, 3 levels): 30 is no multiple of 8
        (lambda m: m["grid"].update(size=[30, 32, 32]), "grid size 30x32x32 is not a multiple of 8"),
    ],
)
def test_load_ensemble_refuses_a_bad_model_json(model_copy, change, expected):
    _edit_model_json(model_copy, change)
    message = _load_error(model_copy)
    assert message.startswith(f"{model_copy / 'model.json'}: ") and expected in message, message


def test_model_quality_control_constants_reach_the_detection(model_copy):
    """A model's calibrated constants (model.json "quality_control", benchmarks/calibrate_qc.py) replace the defaults
    in its detections' quality control; the others keep their defaults."""
    assert load_ensemble(model_copy, "cpu").qc_settings == qc.QcSettings()
    _edit_model_json(model_copy, lambda m: m.update(quality_control={"fold_rms_half_mm": 9.5, "boundary_floor": 0.7}))
    settings = load_ensemble(model_copy, "cpu").qc_settings
    assert settings.fold_rms_half_mm == 9.5 and settings.boundary_floor == 0.7
    assert settings.contrast_half == qc.QcSettings().contrast_half
    image = sitk.Image(32, 32, 32, sitk.sitkFloat32) - 1000.0
    image.SetSpacing((2.0, 2.0, 2.0))
    detection = detect(image, load_ensemble(model_copy, "cpu"))
    assert detection.quality.settings == settings


def test_load_ensemble_refuses_a_json_that_is_no_object(model_copy):
    (model_copy / "model.json").write_text("[1, 2]", encoding="utf-8")
    assert "a JSON object is expected" in _load_error(model_copy)


# --- the network's size multiple: one source of truth for the U-Net and the checks before preprocessing ---


@pytest.mark.parametrize(
    "config, multiple",
    [
        ({}, 16),  # defaults: stem stride 2, features (16, 32, 64, 128): 2 * 2**3
        ({"features": [4, 8, 16], "stem_stride": 2}, 8),  # 2 * 2**2
        ({"features": [4, 8, 16, 32], "stem_stride": 1}, 8),  # 1 * 2**3
        ({"features": [4, 8], "stem_stride": 1}, 2),
        ({"architecture": "per_landmark", "features": [4, 8, 16, 32, 64], "stem_stride": 2}, 32),
    ],
)
def test_required_multiple(config, multiple):
    pytest.importorskip("torch")
    from AorticRootLandmarksLib.network import build_network, required_multiple

    assert required_multiple(config) == multiple
    assert build_network(config).size_multiple == multiple  # the network refuses other sizes with the same number


def test_check_grid_size():
    pytest.importorskip("torch")
    from AorticRootLandmarksLib.network import check_grid_size

    config = {"features": [4, 8], "stem_stride": 2}  # multiple 4
    check_grid_size((32, 32, 32), config)
    check_grid_size((4, 8, 12), config)
    with pytest.raises(InputError, match=r"^--size: grid size 30x32x32 is not a multiple of 4 .* use e\.g\. 32x32x32$"):
        check_grid_size((30, 32, 32), config)
    with pytest.raises(InputError, match=r"run\.yaml: grid size 0x32x2 is not a multiple of 4 .* use e\.g\. 4x32x4$"):
        check_grid_size((0, 32, 2), config, where="run.yaml")


def test_detect_files_threads_accept_slice_gaps(tmp_path, tiny_model_dir):
    from AorticRootLandmarksLib.batch import detect_files
    from AorticRootLandmarksLib.phantom.dicom import write_dicom_series

    image = make_image(size=(24, 24, 16), spacing=(2.0, 2.0, 2.5), value=40)
    files = write_dicom_series(image, tmp_path / "series", uid_key="gap", patient_id="P1")
    files[7].unlink()
    ensemble = load_ensemble(tiny_model_dir, "cpu")
    with pytest.raises(InputError, match="series: slice spacing jumps from 2.5 to 5.0 mm after slice 7 of 15"):
        detect_files([tmp_path / "series"], tmp_path / "refused", ensemble, progress=False, log=lambda line: None)
    assert not (tmp_path / "refused").exists()
    written = detect_files([tmp_path / "series"], tmp_path / "out", ensemble, progress=False, log=lambda line: None,
                           accept_slice_gaps=True)
    assert list(written) == ["series"] and (tmp_path / "out" / "series.json").is_file()
