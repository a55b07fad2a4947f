"""Hostile input to every subcommand: each case must end with exit status 2 and exactly one stderr line
``error: ...``, no traceback, no partial output, and every file the user had left as it was.

The damaged inputs are made on the fly from small valid ones. Cases run in-process through ``aortic_root.cli.main``
(fast); ``Testing/test_end_to_end.py`` runs the installed entry point in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from helpers import make_image

from aortic_root.cli import main
from AorticRootLandmarksLib.io import Case, write_image, write_manifest


@dataclass
class World:
    """Valid inputs the cases damage: a CT, a manifest of two cases, a model folder, and a folder of the user's."""

    root: Path
    image: Path
    manifest: Path
    model: Path
    detections: Path  # an earlier, valid output of `detect`


def _ct(path: Path, size=(24, 24, 16), spacing=(2.0, 2.0, 2.5)) -> Path:
    image = make_image(size=size, spacing=spacing, value=40)
    write_image(image, path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> World:
    root = tmp_path_factory.mktemp("hostile")
    (root / "data").mkdir()
    images = [_ct(root / "data" / f"ct{i}.nii.gz") for i in range(2)]
    points = np.array([[10.0, -10.0, 40.0], [14.0, -6.0, 40.0], [8.0, -5.0, 41.0]])
    manifest = root / "data" / "manifest.csv"
    write_manifest(manifest, [Case(p.name[:-7], p, points + i, "2") for i, p in enumerate(images)])
    assert main(["detect", str(images[0]), "--out", str(root / "det"), "--model", str(tiny_model_dir),
                 "--device", "cpu"]) == 0
    return World(root, images[0], manifest, tiny_model_dir, root / "det")


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _copy_model(world: World, tmp: Path) -> Path:
    return Path(shutil.copytree(world.model, tmp / "model"))


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _nifti_with_pixdim(tmp: Path, values) -> Path:
    """A valid .nii whose header pixdim[1..3] are patched to `values` (offset 80 = pixdim[1], float32 LE)."""
    path = _ct(tmp / "ct.nii")
    data = bytearray(path.read_bytes())
    data[80:92] = struct.pack("<3f", *values)
    path.write_bytes(bytes(data))
    return path


def _dicom(tmp: Path, name="series", drop: int | None = None) -> Path:
    from AorticRootLandmarksLib.phantom.dicom import write_dicom_series

    files = write_dicom_series(make_image(size=(16, 16, 12), spacing=(1.0, 1.0, 1.5), value=40), tmp / name,
                               uid_key=name, patient_id="P1")
    if drop is not None:
        files[drop].unlink()
    return tmp / name


def _detect(world: World, tmp: Path, *images, extra=()) -> list[str]:
    return ["detect", *map(str, images), "--out", str(tmp / "out"), "--model", str(world.model), "--device", "cpu",
            *extra]


def _train(world: World, tmp: Path, manifest=None, extra=()) -> list[str]:
    return ["train", str(manifest or world.manifest), "--out", str(tmp / "out"), "--size", "32", "32", "32",
            "--spacing", "3.2", "--features", "4", "8", "--epochs", "1", "--threads", "1", "--folds", "1",
            "--test-fraction", "0", "--cache-dir",
            str(tmp / "cache"), *extra]


def _manifest(world: World, tmp: Path, edit: Callable[[list[str]], list[str]], encoding="utf-8") -> Path:
    lines = world.manifest.read_text(encoding="utf-8").splitlines()
    path = tmp / "manifest.csv"
    for image in world.manifest.parent.glob("*.nii.gz"):
        os.symlink(image, tmp / image.name)
    path.write_text("\n".join(edit(lines)) + "\n", encoding=encoding)
    return path


def _cell(lines: list[str], row: int, column: int, value: str) -> list[str]:
    fields = lines[row].split(",")
    fields[column] = value
    return [*lines[:row], ",".join(fields), *lines[row + 1 :]]


def _yaml(tmp: Path, text: str) -> Path:
    path = tmp / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _file(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def _truncated_gz(tmp: Path) -> Path:
    path = _ct(tmp / "ct.nii.gz", size=(64, 64, 40))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _read_only_parent(tmp: Path) -> Path:
    locked = tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return locked / "out"


def _not_ours(tmp: Path) -> Path:
    folder = tmp / "mine"
    folder.mkdir()
    (folder / "thesis.docx").write_bytes(b"precious")
    return folder


def _two_series(tmp: Path) -> Path:
    _dicom(tmp, "a")
    _dicom(tmp, "b")
    for path in (tmp / "b").iterdir():
        path.rename(tmp / "a" / f"b_{path.name}")
    return tmp / "a"


# (id, argv builder (world, tmp) -> argv, text the error line must contain)
CASES: list[tuple[str, Callable[[World, Path], list[str]], str]] = [
    # images
    ("image-missing", lambda w, t: _detect(w, t, t / "nope.nii.gz"), "no such file"),
    ("image-unsupported-suffix", lambda w, t: _detect(w, t, _file(t, "ct.txt", b"hello")), "unsupported image"),
    ("image-empty-file", lambda w, t: _detect(w, t, _file(t, "ct.nii.gz", b"")), "ct.nii.gz"),
    ("image-garbage", lambda w, t: _detect(w, t, _file(t, "ct.nii.gz", os.urandom(4000))), "ct.nii.gz"),
    ("image-truncated-gz", lambda w, t: _detect(w, t, _truncated_gz(t)), "ct.nii.gz"),
    ("image-zero-spacing", lambda w, t: _detect(w, t, _nifti_with_pixdim(t, (0.0, 1.0, 1.0))), "spacing"),
    ("image-negative-spacing", lambda w, t: _detect(w, t, _nifti_with_pixdim(t, (-1.0, 1.0, 1.0))), "spacing"),
    ("image-nan-spacing", lambda w, t: _detect(w, t, _nifti_with_pixdim(t, (float("nan"), 1.0, 1.0))), "spacing"),
    ("image-2d", lambda w, t: _detect(w, t, _write(sitk.Image([16, 16], sitk.sitkInt16), t / "slice.nrrd")), "2D"),
    ("image-rgb", lambda w, t: _detect(w, t, _write(sitk.Image([8, 8, 8], sitk.sitkVectorUInt8, 3), t / "rgb.nrrd")),
     "components"),
    ("dicom-empty-folder", lambda w, t: _detect(w, t, _mkdir(t / "empty")), "no DICOM series"),
    ("dicom-two-series", lambda w, t: _detect(w, t, _two_series(t)), "2 DICOM series"),
    ("dicom-missing-slice", lambda w, t: _detect(w, t, _dicom(t, drop=5)), "slice"),
    ("dicom-not-dicom-files", lambda w, t: _detect(w, t, _mkdir(t / "docs", {"a.txt": b"x"})), "no DICOM series"),
    ("images-same-name", lambda w, t: _detect(w, t, w.image, _copy_to(w.image, t / "x")), "share the output name"),
    # models and devices
    ("model-no-model-json", lambda w, t: [*_detect(w, t, w.image)[:-4], "--model", str(_mkdir(t / "m")),
                                          "--device", "cpu"], "not a model folder"),
    ("model-json-invalid", lambda w, t: _detect_with_model(w, t, lambda m: (m / "model.json").write_text("{")),
     "model.json"),
    ("model-format-version", lambda w, t: _detect_with_model(
        w, t, lambda m: _edit_json(m / "model.json", lambda d: d.update(format_version=99))), "format"),
    ("model-truncated-fold", lambda w, t: _detect_with_model(
        w, t, lambda m: (m / "fold0.pt").write_bytes((m / "fold0.pt").read_bytes()[:500])), "fold0.pt"),
    ("model-missing-fold", lambda w, t: _detect_with_model(w, t, lambda m: (m / "fold1.pt").unlink()), "fold1.pt"),
    ("model-landmark-count", lambda w, t: _detect_with_model(
        w, t, lambda m: _edit_json(m / "model.json", lambda d: d.update(landmarks=["RCC", "LCC"]))), "landmark"),
    ("model-network-mismatch", lambda w, t: _detect_with_model(
        w, t, lambda m: _edit_json(m / "model.json", lambda d: d["network"].update(features=[8, 16, 32]))),
     "fold0.pt"),
    ("device-bogus", lambda w, t: [*_detect(w, t, w.image)[:-1], "gpu0"], "gpu0"),
    ("device-cuda-absent", lambda w, t: [*_detect(w, t, w.image)[:-1], "cuda"], "CUDA"),
    # output folders
    ("out-is-a-file", lambda w, t: _replace_out(_detect(w, t, w.image), _file(t, "out", b"x")),
     "existing file"),
    ("out-under-a-file", lambda w, t: _replace_out(_detect(w, t, w.image), _file(t, "f", b"x") / "out"), "cannot"),
    ("out-not-empty-no-force", lambda w, t: _replace_out(_detect(w, t, w.image), w.detections), "--force"),
    ("out-not-ours-force", lambda w, t: _replace_out(_detect(w, t, w.image, extra=["--force"]), _not_ours(t)),
     "not written by aortic-root"),
    ("out-holds-input-force", lambda w, t: _detect_into_own_input(w, t), "holds the input"),
    ("demo-out-cwd-force", lambda w, t: ["demo", "--out", ".", "--force", "--device", "cpu"], "current folder"),
    ("demo-out-parent-force", lambda w, t: ["demo", "--out", "..", "--force", "--device", "cpu"], "current folder"),
    ("train-out-not-ours-force", lambda w, t: _replace_out(_train(w, t, extra=["--force"]), _not_ours(t)),
     "not written by aortic-root"),
    # manifests
    ("manifest-missing-column", lambda w, t: ["evaluate", str(w.detections), str(_manifest(
        w, t, lambda lines: [lines[0].replace("NCC_z", "NCC_q"), *lines[1:]]))], "lacks column"),
    ("manifest-nan", lambda w, t: ["evaluate", str(w.detections), str(_manifest(
        w, t, lambda x: _cell(x, 1, 1, "nan")))],
     "not a finite number"),
    ("manifest-text-coordinate", lambda w, t: ["evaluate", str(w.detections), str(_manifest(
        w, t, lambda x: _cell(x, 1, 2, "12,5mm")))], "is not a number"),
    ("manifest-empty-image-cell", lambda w, t: _train(w, t, _manifest(w, t, lambda x: _cell(x, 1, 0, ""))),
     "empty image"),
    ("manifest-latin1", lambda w, t: _train(w, t, _manifest(w, t, lambda x: [*x, "é"], encoding="latin-1")),
     "not UTF-8"),
    ("manifest-duplicate-case", lambda w, t: _train(w, t, _manifest(w, t, lambda x: [*x, x[1]])), "twice"),
    ("manifest-no-rows", lambda w, t: _train(w, t, _manifest(w, t, lambda x: x[:1])), "no cases"),
    ("manifest-image-missing", lambda w, t: _train(w, t, _manifest(w, t, lambda x: _cell(x, 1, 0, "gone.nii.gz"))),
     "not found"),
    # training configs and flags
    ("config-unknown-key", lambda w, t: [*_train(w, t), "--config", str(_yaml(t, "sigmaa: 1\n"))], "unknown config"),
    ("config-wrong-type", lambda w, t: [*_train(w, t), "--config", str(_yaml(t, "sigma: wide\n"))], "sigma"),
    ("config-bad-yaml", lambda w, t: [*_train(w, t), "--config", str(_yaml(t, "sigma: [1\n"))], "cannot read config"),
    ("config-not-mapping", lambda w, t: [*_train(w, t), "--config", str(_yaml(t, "- 1\n- 2\n"))], "mapping"),
    ("config-bad-choice", lambda w, t: [*_train(w, t), "--config", str(_yaml(t, "loss: dice\n"))], "loss"),
    ("flag-steps-negative", lambda w, t: _train(w, t, extra=["--steps-per-epoch", "-1"]), "steps_per_epoch"),
    ("flag-seed-negative", lambda w, t: _train(w, t, extra=["--seed", "-1"]), "seed"),
    ("flag-threads-zero", lambda w, t: _train(w, t, extra=["--threads", "0"]), "threads"),
    ("flag-sigma-nan", lambda w, t: _train(w, t, extra=["--sigma", "nan"]), "sigma"),
    ("flag-features-zero", lambda w, t: _train(w, t, extra=["--features", "0"]), "features"),
    ("flag-size-not-multiple", lambda w, t: [*_train(w, t), "--size", "30", "30", "30"], "multiple"),
    ("cache-dir-under-file", lambda w, t: [*_train(w, t), "--cache-dir", str(_file(t, "c", b"x") / "cache")], "cache"),
    # sweep, evaluate, phantom, demo
    ("sweep-non-numeric", lambda w, t: ["sweep", str(w.manifest), "--out", str(t / "out"), "--sigma", "1,x"], "'x'"),
    ("sweep-no-grid", lambda w, t: ["sweep", str(w.manifest), "--out", str(t / "out")], "at least one setting"),
    ("sweep-bad-value", lambda w, t: ["sweep", str(w.manifest), "--out", str(t / "out"), "--folds", "0,2"], "folds"),
    ("sweep-bad-manifest", lambda w, t: ["sweep", str(_manifest(w, t, lambda x: _cell(x, 1, 1, "nan"))), "--out",
                                         str(t / "out"), "--sigma", "1,2"], "not a finite number"),
    ("evaluate-no-predictions", lambda w, t: ["evaluate", str(_mkdir(t / "p", {"other.json": b"{}"})),
                                              str(w.manifest), "--out", str(t / "out")], "no prediction"),
    ("evaluate-corrupt-json", lambda w, t: ["evaluate", str(_mkdir(t / "p", {"ct0.json": b"{oops"})),
                                            str(w.manifest), "--out", str(t / "out")], "ct0.json"),
    ("evaluate-nan-position", lambda w, t: ["evaluate", str(_mkdir(t / "p", {"ct0.json": json.dumps(
        {"landmarks": {n: {"position_lps": [0, "nan", 0]} for n in ("RCC", "LCC", "NCC")}}).encode()})),
        str(w.manifest), "--out", str(t / "out")], "not 3 finite numbers"),
    ("phantom-zero-cases", lambda w, t: ["phantom", "--out", str(t / "out"), "--n", "0"], "at least 1"),
    ("demo-zero-cases", lambda w, t: ["demo", "--out", str(t / "out"), "--n", "0"], "at least one"),
    ("demo-bad-device-before-work", lambda w, t: ["demo", "--out", str(t / "out"), "--device", "tpu"], "tpu"),
    ("demo-bad-model-before-work", lambda w, t: ["demo", "--out", str(t / "out"), "--model", str(_mkdir(t / "m"))],
     "not a model folder"),
]


def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def _mkdir(path: Path, files: dict[str, bytes] | None = None) -> Path:
    path.mkdir(parents=True)
    for name, content in (files or {}).items():
        (path / name).write_bytes(content)
    return path


def _copy_to(path: Path, folder: Path) -> Path:
    folder.mkdir()
    return Path(shutil.copy(path, folder / path.name))


def _replace_out(argv: list[str], out: Path) -> list[str]:
    argv = list(argv)
    argv[argv.index("--out") + 1] = str(out)
    return argv


def _detect_with_model(world: World, tmp: Path, damage: Callable[[Path], object]) -> list[str]:
    model = _copy_model(world, tmp)
    damage(model)
    return _replace_model(_detect(world, tmp, world.image), model)


def _replace_model(argv: list[str], model: Path) -> list[str]:
    argv[argv.index("--model") + 1] = str(model)
    return argv


def _detect_into_own_input(world: World, tmp: Path) -> list[str]:
    out = tmp / "out"
    assert main(_detect(world, tmp, world.image)) == 0  # a tool-written folder ...
    image = Path(shutil.copy(world.image, out / "ct.nii.gz"))  # ... that now holds the input
    return _detect(world, tmp, image, extra=["--force"])


@pytest.mark.parametrize("name, build, message", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_clear_line_and_loses_nothing(name, build, message, world, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("the user's own file", encoding="utf-8")
    monkeypatch.chdir(work)
    argv = build(world, tmp_path)
    before_tmp, before_world = _snapshot(tmp_path), _snapshot(world.root)
    capsys.readouterr()

    status = main(argv)

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, f"exit status {status}; stderr: {err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and ".partial" not in err
    assert message.lower() in lines[0].lower(), lines[0]
    assert _snapshot(tmp_path) == before_tmp, "files were created, changed or deleted"
    assert _snapshot(world.root) == before_world, "the valid inputs or an earlier output changed"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_folder(world, tmp_path, capsys):
    out = _read_only_parent(tmp_path)
    assert main(_replace_out(_detect(world, tmp_path, world.image), out)) == 2
    assert capsys.readouterr().err.startswith("error: ") and not out.exists()


def test_the_suite_covers_at_least_forty_kinds():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)


def test_accepts_a_manifest_with_a_byte_order_mark(world, tmp_path, capsys):
    text = world.manifest.read_text(encoding="utf-8")
    manifest = tmp_path / "data" / "manifest.csv"
    shutil.copytree(world.manifest.parent, manifest.parent)
    manifest.write_text("\ufeff" + text, encoding="utf-8")
    with pytest.warns(UserWarning, match="1 of 2 cases have no prediction"):  # only ct0 was detected
        assert main(["evaluate", str(world.detections), str(manifest)]) == 0
    assert "1 cases" in capsys.readouterr().out
