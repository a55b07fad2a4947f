"""The output-folder policy (AorticRootLandmarksLib.outputs): --force replaces only what the tool wrote."""

from __future__ import annotations

import os

import pytest

from AorticRootLandmarksLib.errors import InputError
from AorticRootLandmarksLib.outputs import MARKER, atomic_output_dir, is_tool_output, replacing_dir


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_output_dir_swaps_in_only_on_success(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("1", encoding="utf-8")
        assert not out.exists()  # nothing visible until the block succeeds
    assert (out / "a.txt").read_text(encoding="utf-8") == "1" and is_tool_output(out)
    with pytest.raises(InputError, match="--force"):
        with atomic_output_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out, force=True) as tmp:
            (tmp / "b.txt").write_text("2", encoding="utf-8")
            raise RuntimeError("boom")
    assert _names(tmp_path) == ["out"]  # no partial folder left
    assert (out / "a.txt").exists() and not (out / "b.txt").exists()  # old output kept on failure
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "c.txt").write_text("3", encoding="utf-8")
    assert _names(out) == [MARKER, "c.txt"]


def test_force_refuses_a_folder_the_tool_did_not_write(tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"x")
    for context in (atomic_output_dir, replacing_dir):
        with pytest.raises(InputError, match="not written by aortic-root"):
            with context(mine, force=True):
                pass
    assert _names(mine) == ["holiday.jpg"]


@pytest.mark.parametrize("where", ["cwd", "parent_of_cwd", "home"])
def test_never_the_current_folder_its_parents_or_home(tmp_path, monkeypatch, where):
    work = tmp_path / "work"
    work.mkdir()
    (work / MARKER).write_text("{}", encoding="utf-8")  # even one that looks like ours
    (work / "notes.txt").write_text("keep", encoding="utf-8")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(work))
    target = {"cwd": ".", "parent_of_cwd": "..", "home": str(work)}[where]
    with pytest.raises(InputError, match="current folder|home"):
        with replacing_dir(target, force=True):
            pass
    assert (work / "notes.txt").read_text(encoding="utf-8") == "keep"


def test_never_a_folder_holding_an_input(tmp_path):
    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "ct.nii.gz").write_bytes(b"x")
    with pytest.raises(InputError, match="holds the input"):
        with atomic_output_dir(out, force=True, inputs=[out / "ct.nii.gz"]):
            pass
    assert (out / "ct.nii.gz").exists()


def test_replacing_dir_restores_the_old_output_on_failure(tmp_path):
    out = tmp_path / "run"
    with replacing_dir(out) as folder:
        (folder / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        with replacing_dir(out, force=True) as folder:
            assert not (folder / "old.txt").exists()  # the new run starts empty ...
            (folder / "new.txt").write_text("new", encoding="utf-8")
            raise KeyboardInterrupt
    assert _names(out) == [MARKER, "old.txt"]  # ... and the old one comes back when it fails
    assert _names(tmp_path) == ["run"]
    with replacing_dir(out, force=True) as folder:
        (folder / "new.txt").write_text("new", encoding="utf-8")
    assert _names(out) == [MARKER, "new.txt"] and _names(tmp_path) == ["run"]


def test_a_fresh_run_that_fails_keeps_its_partial_results(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with replacing_dir(out) as folder:
            (folder / "last.pt").write_bytes(b"weights")
            raise RuntimeError("killed")
    assert (out / "last.pt").exists()


def test_stale_partial_folders_of_dead_runs_are_cleaned(tmp_path):
    out = tmp_path / "det"
    dead = tmp_path / f".det.{2**22 + 12345}.abcd.partial"  # a pid above Linux's maximum: no such process
    live = tmp_path / f".det.{os.getpid()}.efgh.partial"
    for folder in (dead, live):
        folder.mkdir()
        (folder / MARKER).write_text("{}", encoding="utf-8")
    with atomic_output_dir(out):
        pass
    assert not dead.exists() and live.exists()


def test_unwritable_or_impossible_places_are_one_line_errors(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="existing file"):
        with atomic_output_dir(a_file):
            pass
    with pytest.raises(InputError, match="cannot create"):
        with atomic_output_dir(a_file / "sub" / "out"):
            pass
    assert a_file.read_text(encoding="utf-8") == "x"


def test_replacing_file_keeps_the_old_file_when_writing_fails(tmp_path):
    from AorticRootLandmarksLib.outputs import replacing_file

    path = tmp_path / "done.json"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with replacing_file(path) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("disk full")
    assert _names(tmp_path) == ["done.json"] and path.read_text(encoding="utf-8") == "old"
    with replacing_file(path) as tmp:
        tmp.write_text("new", encoding="utf-8")
        assert path.read_text(encoding="utf-8") == "old"  # nothing visible until the block ends
    assert _names(tmp_path) == ["done.json"] and path.read_text(encoding="utf-8") == "new"
