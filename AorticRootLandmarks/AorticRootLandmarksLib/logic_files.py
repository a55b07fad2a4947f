"""The files the module writes: results of a case, its TAVI plan, a corrected case added to a training manifest.

A mixin of :class:`logic.LandmarkLogic` (it uses ``updateAnnulus`` and the scene); every folder is written all or
nothing by ``outputs.atomic_output_dir`` (a new folder, or one this tool wrote with ``force``). Files are in world
LPS mm, like every file of the project.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import geometry, mrml, mrml_tables
from .constants import HINGE_NAMES
from .errors import InputError

#: File name of the picture of the annulus views in a results folder.
SCREENSHOT_NAME = "annulus_views.png"


def _safe_name(name: str, default: str) -> str:
    """A node name as a file name: letters, digits, '-' and '_' kept, anything else '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or default


def _number(value: float) -> float | None:
    """JSON has no NaN: a value that cannot be measured is written as null."""
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


class ResultFiles:
    """Save results, save the TAVI plan, export a corrected case for training (methods of the module's logic)."""

    def saveResults(self, fiducialNode, folder, force: bool = False,
                    screenshot: Callable[[Path], None] | None = None) -> list[Path]:
        """Write the point list, its measurements and a picture of the annulus views into a new folder.

        Files: ``<name>.mrk.json`` (Slicer markups, LPS; each point's verdict in its description),
        ``measurements.json`` (landmarks with confidence and verdict, the measurement table, the geometry's
        measurements and C-arm views, the lumen, or why there are none) and ``measurements.csv`` (the points, then
        the measurement table as shown: measurement, value, unit); with ``screenshot``, :data:`SCREENSHOT_NAME`.

        Args:
            screenshot: called with the PNG path to write (in Slicer: a capture of the view layout); the folder
                appears only if it succeeds.

        Returns:
            The written files.
        """
        from .io import write_markups
        from .outputs import atomic_output_dir

        result = self.updateAnnulus(fiducialNode, reorientViews=False)
        name = _safe_name(fiducialNode.GetName(), "points")
        rows = mrml_tables.read_measurement_table(result.tableNode)
        placed = [p for p in result.points if p.positionLps is not None]
        record = {
            "coordinate_system": "LPS", "units": "mm",
            "landmarks": {p.name: {"position_lps": [round(float(v), 4) for v in p.positionLps],
                                   "confidence": p.confidence, "verdict": p.verdict, "reason": p.reason}
                          for p in placed},
            "table": [{"measurement": label, "value": _number(value), "unit": unit} for label, value, unit in rows],
            "measurements": result.measurements,
            "implant_views": {k: {"lao_deg": v[0], "cran_deg": v[1]} for k, v in (result.implantViews or {}).items()},
            "lumen": result.lumen.to_dict() if result.lumen is not None else None,
            "error": result.error,
        }  # fmt: skip
        csv_rows = [(f"{p.name} {axis} (LPS)", f"{v:.3f}", "mm") for p in placed
                    for axis, v in zip("xyz", p.positionLps, strict=True)]
        csv_rows += [(label, "" if _number(value) is None else f"{value:.4g}", unit) for label, value, unit in rows]
        files = [f"{name}.mrk.json", "measurements.json", "measurements.csv"]
        positions = np.reshape([p.positionLps for p in placed], (-1, 3))
        with atomic_output_dir(folder, force) as tmp:
            write_markups(tmp / files[0], [p.name for p in placed], positions,
                          descriptions=[f"{p.verdict}: {p.reason}" if p.reason else p.verdict for p in placed])
            (tmp / files[1]).write_text(json.dumps(record, indent=2), encoding="utf-8")
            with (tmp / files[2]).open("w", newline="", encoding="utf-8") as handle:
                csv.writer(handle).writerows([("measurement", "value", "unit"), *csv_rows])
            if screenshot is not None:
                screenshot(tmp / SCREENSHOT_NAME)
                files.append(SCREENSHOT_NAME)
        return [Path(folder) / f for f in files]

    def savePlan(self, fiducialNode, folder, force: bool = False, figure: bool = True):
        """Write the TAVI plan of the point list on its CT, as ``aortic-root plan`` does: ``<case>.plan.json`` and
        ``<case>.plan.png`` in a new folder (case: the volume's name).

        Returns:
            (the ``plan.Plan``, the written files).

        Raises:
            InputError: no CT linked to the point list (detect, or select the volume, first), or RCC, LCC or NCC
                missing.
        """
        from .outputs import atomic_output_dir
        from .plan import make_plan, write_plan

        volumeNode = mrml.linked_node(fiducialNode, mrml.VOLUME_REFERENCE)
        if volumeNode is None:
            raise InputError(f"save plan: '{fiducialNode.GetName()}' has no CT; select the CT volume first")
        storage = volumeNode.GetStorageNode()
        names, points = mrml.get_fiducials_lps(fiducialNode)
        image = self._volumeImage(volumeNode)
        plan = make_plan(image, names, points, case=_safe_name(volumeNode.GetName(), "case"),
                         image_path=(storage.GetFileName() or "") if storage is not None else "",
                         source=f"3D Slicer point list '{fiducialNode.GetName()}'")
        with atomic_output_dir(folder, force) as tmp:
            written = write_plan(plan, image, tmp, figure)
        return plan, [Path(folder) / f.name for f in written]

    @staticmethod
    def exportCaseForTraining(volumeNode, fiducialNode, manifestPath) -> bool:
        """Write the volume's file and the point list's RCC/LCC/NCC (world LPS mm) as a row of a training manifest.

        The analyst's corrections then feed the next ``aortic-root train`` (data contract: README). A row of the same
        case is replaced. Returns True if a row was replaced.

        Raises:
            InputError: the volume was not loaded from or saved to a file, or a hinge point is missing or cleared.
        """
        from .io import Case, add_manifest_case, case_id

        storage = volumeNode.GetStorageNode() if volumeNode is not None else None
        path = storage.GetFileName() if storage is not None else None
        if not path:
            raise InputError("export: the volume has no file; save it first (the manifest refers to the image file)")
        names, points = mrml.get_fiducials_lps(fiducialNode)
        hinges = geometry.select_points(names, points)
        return add_manifest_case(manifestPath, Case(case_id(path), Path(path), hinges), HINGE_NAMES)
