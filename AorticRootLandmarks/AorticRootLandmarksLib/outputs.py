"""The output-folder policy of every command, in one place: nothing a user owns is overwritten or deleted.

- An output folder that exists and is not empty is refused, unless ``force``.
- ``force`` replaces only a folder this tool wrote: each output folder carries a small marker file
  (:data:`MARKER`), and a folder without it is refused even with ``force``.
- The current folder, its parents, the home folder, a filesystem root and any folder holding an input are never
  output folders.
- The old output is removed only after the new one is complete, so it survives every failure.

Two shapes of output use it: :func:`atomic_output_dir` (written in a hidden sibling and swapped in at the end:
detections, evaluations, phantom datasets) and :func:`replacing_dir` (written in place, for long work whose partial
results are worth keeping: training runs, sweeps, the demo).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import InputError
from .typing import PathLike

#: Written into every output folder the tool makes; ``--force`` replaces only folders that hold it.
MARKER = ".aortic-root-output"
_PARTIAL = ".partial"


def is_tool_output(path: PathLike) -> bool:
    """True if `path` is a folder this tool wrote (it holds :data:`MARKER`)."""
    return (Path(path) / MARKER).is_file()


def check_output_dir(path: PathLike, force: bool = False, inputs: Sequence[PathLike] = ()) -> Path:
    """Refuse an output folder that the policy above forbids; returns it as a Path.

    Args:
        path: the output folder (need not exist).
        force: allow replacing a non-empty folder this tool wrote.
        inputs: files or folders the command reads; the output may not be one of them or hold one.

    Raises:
        InputError: one line naming the folder and the reason.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: output folder is an existing file")
    resolved = path.resolve()
    protected = {Path.cwd().resolve(), *Path.cwd().resolve().parents, Path.home().resolve(), Path(resolved.anchor)}
    if resolved in protected:
        raise InputError(f"{path}: is the current folder, one of its parents or the home folder; give a new folder")
    for item in inputs:
        source = Path(item).resolve()
        if source == resolved or resolved in source.parents:
            raise InputError(f"{path}: holds the input {item}; give another output folder")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise InputError(f"{path}: output folder exists and is not empty (use --force to replace it)")
        if not is_tool_output(path):
            raise InputError(f"{path}: folder was not written by aortic-root; not replacing it, even with --force")
    return path


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"{path}: cannot create the output folder ({err.strerror or err})") from None
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"{path}: cannot write into {path.parent} (permission denied)")


def _write_marker(folder: Path, final: Path) -> None:
    now = datetime.datetime.now().isoformat(timespec="seconds")
    record = {"tool": "aortic-root", "folder": final.name, "created": now}
    (folder / MARKER).write_text(json.dumps(record) + "\n", encoding="utf-8")


def _remove_stale_partials(path: Path) -> None:
    """Remove hidden partial folders that an interrupted earlier run left next to `path` (their process is gone)."""
    for stale in path.parent.glob(f".{path.name}.*{_PARTIAL}"):
        pid = stale.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and is_tool_output(stale):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _swap_in(new: Path, path: Path) -> None:
    """Put `new` at `path`; an existing `path` is moved aside first and removed only once `new` is in place."""
    if not path.exists():
        new.rename(path)
        return
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    path.rename(old)
    new.rename(path)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_dir(path: PathLike, force: bool = False, inputs: Sequence[PathLike] = ()) -> Iterator[Path]:
    """Write a folder all at once: yield a hidden sibling folder, swap it in only if the block succeeds.

    Raises:
        InputError: see :func:`check_output_dir`; or the parent folder cannot be written.

    Example:
        >>> with atomic_output_dir("out/detections") as tmp:
        ...     (tmp / "case.json").write_text("{}", encoding="utf-8")
    """
    path = check_output_dir(path, force, inputs)
    _make_parent(path)
    _remove_stale_partials(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=_PARTIAL, dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the output is an ordinary folder
    try:
        _write_marker(tmp, path)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, path)


@contextlib.contextmanager
def replacing_file(path: PathLike) -> Iterator[Path]:
    """Write one file atomically: yield a hidden temporary sibling, which replaces `path` when the block succeeds.

    A kill or an error leaves the old file (or none), never half of the new one.

    Example:
        >>> with replacing_file("run/fold0/done.json") as tmp:
        ...     tmp.write_text("{}", encoding="utf-8")
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


@contextlib.contextmanager
def replacing_dir(path: PathLike, force: bool = False, inputs: Sequence[PathLike] = ()) -> Iterator[Path]:
    """Write a folder in place (for long work); an old folder it replaces comes back if the block fails.

    The old folder (only with ``force``, only one this tool wrote) is moved aside to a hidden sibling and deleted
    when the block succeeds. If the block fails, the new partial folder is removed and the old one restored; with no
    old folder the partial one stays (a training run's checkpoints are worth keeping).
    """
    path = check_output_dir(path, force, inputs)
    _make_parent(path)
    backup = None
    if path.exists() and any(path.iterdir()):
        backup = path.with_name(f".{path.name}.{os.getpid()}.old")
        path.rename(backup)
    try:
        path.mkdir(parents=True, exist_ok=True)
        _write_marker(path, path)
        yield path
    except BaseException:
        if backup is not None:
            shutil.rmtree(path, ignore_errors=True)
            backup.rename(path)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
