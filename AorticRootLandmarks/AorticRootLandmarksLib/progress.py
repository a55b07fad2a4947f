"""Progress bars for long work: tqdm on stderr when it is installed and stderr is a terminal, else a pass-through.

Not drawn into logs and pipes (tqdm's ``disable=None``), so a captured stderr holds only messages and errors.

tqdm is not shipped with 3D Slicer, so the core imports it only here, lazily.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], enabled: bool = True, **kwargs) -> Iterable[T]:
    """Wrap `iterable` in a tqdm bar on stderr (``desc``, ``unit``, ``total`` ... as tqdm takes them).

    Returns `iterable` itself when `enabled` is False or tqdm is missing.
    """
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, disable=None, **kwargs)
