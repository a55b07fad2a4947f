"""``aortic-root plan`` and the plans ``aortic-root detect`` writes: help, one-line errors, output policy, runs."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk

from aortic_root.cli import build_parser, main
from AorticRootLandmarksLib.constants import ALL_LANDMARKS, HINGE_NAMES
from AorticRootLandmarksLib.io import write_markups
from AorticRootLandmarksLib.outputs import MARKER
from AorticRootLandmarksLib.phantom import all_landmarks_lps, generate_case


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A small phantom CT, and markups with all five landmarks and with the hinge points only."""
    folder = tmp_path_factory.mktemp("plan_cli")
    phantom = generate_case(1, seed=5, size="small")
    image = folder / "phantom_0001.nii.gz"
    sitk.WriteImage(phantom.image, str(image), True)
    write_markups(folder / "all.mrk.json", list(ALL_LANDMARKS), all_landmarks_lps(phantom))
    write_markups(folder / "hinges.mrk.json", list(HINGE_NAMES), phantom.landmarks_lps)
    write_markups(folder / "two.mrk.json", ["RCC", "LCC"], phantom.landmarks_lps[:2])
    write_markups(folder / "far.mrk.json", list(HINGE_NAMES), phantom.landmarks_lps + 500.0)
    return folder


def _error(capsys, argv) -> str:
    """Run the command, expect exit status 2 and one line ``error: ...`` on stderr; return that line."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_plan_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["plan", "--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in ("IMAGE", "--landmarks", "--out", "--force", "--no-figure"):
        assert flag in text
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    for command in ("plan", "detect"):
        for action in sub[command]._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{command} {action.option_strings} has no help"
    assert "--no-plan" in sub["detect"].format_help()


def test_plan_end_to_end(case, tmp_path, capsys):
    out = tmp_path / "plan"
    assert main(["plan", str(case / "phantom_0001.nii.gz"), "--landmarks", str(case / "all.mrk.json"),
                 "--out", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "not a medical device" in printed and "LCO" in printed and "cusp-overlap" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER, "phantom_0001.plan.json", "phantom_0001.plan.png"])  # fmt: skip
    record = json.loads((out / "phantom_0001.plan.json").read_text(encoding="utf-8"))
    assert record["landmarks_source"] == f"landmarks file {case / 'all.mrk.json'}"
    assert record["coronary_heights"]["available"] and record["lumen"]["ok"]
    assert (out / "phantom_0001.plan.png").stat().st_size > 50_000
    # hinge points only, no figure, into the same folder with --force (a folder aortic-root wrote)
    assert main(["plan", str(case / "phantom_0001.nii.gz"), "--landmarks", str(case / "hinges.mrk.json"),
                 "--out", str(out), "--force", "--no-figure"]) == 0  # fmt: skip
    assert "coronary heights not available" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "phantom_0001.plan.json"])
    record = json.loads((out / "phantom_0001.plan.json").read_text(encoding="utf-8"))
    assert record["coronary_heights"] == {"available": False,
                                          "reason": "not available: the landmarks have no coronary ostia (LCO, RCO)"}


def test_plan_errors_are_one_line_and_write_nothing(case, tmp_path, capsys):
    image, out = case / "phantom_0001.nii.gz", tmp_path / "out"
    assert "missing.nii.gz: no such file" in _error(capsys, ["plan", tmp_path / "missing.nii.gz", "--landmarks",
                                                             case / "all.mrk.json", "--out", out])  # fmt: skip
    assert "none.mrk.json: no such file" in _error(capsys, ["plan", image, "--landmarks", tmp_path / "none.mrk.json",
                                                            "--out", out])  # fmt: skip
    (tmp_path / "bad.mrk.json").write_text("{not json", encoding="utf-8")
    assert "not a readable Slicer markups file" in _error(
        capsys, ["plan", image, "--landmarks", tmp_path / "bad.mrk.json", "--out", out])  # fmt: skip
    assert "no point labelled NCC" in _error(capsys, ["plan", image, "--landmarks", case / "two.mrk.json",
                                                      "--out", out])  # fmt: skip
    assert "outside the image" in _error(capsys, ["plan", image, "--landmarks", case / "far.mrk.json", "--out", out])
    assert not out.exists()


def test_plan_output_folder_policy(case, tmp_path, capsys):
    image, landmarks = case / "phantom_0001.nii.gz", case / "all.mrk.json"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    assert "--force" in _error(capsys, ["plan", image, "--landmarks", landmarks, "--out", mine])
    assert "not written by aortic-root" in _error(capsys, ["plan", image, "--landmarks", landmarks, "--out", mine,
                                                           "--force"])  # fmt: skip
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert "holds the input" in _error(capsys, ["plan", image, "--landmarks", landmarks, "--out", case])


def test_detect_writes_plans_and_an_index(case, tmp_path, tiny_model_dir, capsys):
    image = str(case / "phantom_0001.nii.gz")
    out = tmp_path / "det"
    assert main(["detect", image, "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    assert "not a medical device" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"phantom_0001.json", "phantom_0001.mrk.json", "index.html"} <= names
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "phantom_0001" in page and "not a medical device" in page
    if "phantom_0001.plan.json" in names:  # random weights: the hinge triangle may be degenerate (no plan, said so)
        record = json.loads((out / "phantom_0001.plan.json").read_text(encoding="utf-8"))
        assert record["landmarks_source"] == "detection" and "verdict" in record["quality"]
        assert "phantom_0001.plan.png" in names
    else:
        assert "no plan" in page
    detection = json.loads((out / "phantom_0001.json").read_text(encoding="utf-8"))
    if "implant_views" in detection.get("annulus", {}):
        assert set(detection["annulus"]["implant_views"]["three_cusp"]) == {"lao_deg", "cran_deg", "label"}
    out = tmp_path / "det_no_plan"
    assert main(["detect", image, "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--no-plan"]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "phantom_0001.json", "phantom_0001.mrk.json"])
    assert detection["first_stage_grids"] == 5  # test-time augmentation by default
    out = tmp_path / "det_no_tta"
    assert main(["detect", image, "--out", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
                 "--no-plan", "--no-tta"]) == 0  # fmt: skip
    assert json.loads((out / "phantom_0001.json").read_text(encoding="utf-8"))["first_stage_grids"] == 1
