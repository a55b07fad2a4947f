"""benchmarks/calibrate_qc.py: the grid search finds the constants that flag the bad points, on tiny rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import calibrate_qc  # noqa: E402  (a script folder, not a package)


def _row(landmark: str, error: float, score: float | None) -> dict:
    """A point whose signals are all good (folds and refiner agree, sharp peak, at a boundary) but its refiner score."""
    return {"case": "c0", "landmark": landmark, "error_mm": str(error), "stage1_error_mm": str(error),
            "stage1_rms_mm": "0.8", "peak_contrast": "40", "boundary": "1.0", "refine_rms_mm": "0.3",
            "refine_shift_mm": "1.0", "refine_score": "" if score is None else str(score), "refine_passes": "1",
            "refine_status": "refined", "refine_failure": "", "case_failed_families": "0", "verdict": "ok"}  # fmt: skip


def test_fit_uses_the_refiner_score_when_only_it_tells_the_bad_point():
    rows = [_row("RCC", 0.8, 80.0), _row("LCC", 1.1, 75.0), _row("NCC", 9.0, 12.0), _row("LCO", 0.6, 90.0)]
    settings, found = calibrate_qc.fit(rows)
    assert settings.refine_score_half is not None
    assert found["bad_flagged"] == 1.0 and found["good_flagged"] == 0.0 and found["spearman"] < 0
    # Without the score (signals collected before it existed) no constant can tell the bad point.
    blind = [{**row, "refine_score": ""} for row in rows]
    assert calibrate_qc.figures(blind, settings)["bad_flagged"] == 0.0
    _, found = calibrate_qc.fit([{k: v for k, v in row.items() if k != "refine_score"} for row in rows])
    assert found["bad_flagged"] == 0.0


def test_confidences_apply_the_score_term_only_with_a_half():
    rows = [_row("RCC", 9.0, 12.0)]
    without, _ = calibrate_qc.confidences(rows, calibrate_qc.qc.QcSettings())
    with_half, flagged = calibrate_qc.confidences(rows, calibrate_qc.qc.QcSettings(refine_score_half=40.0))
    assert with_half[0] == pytest.approx(without[0] * 12.0**4 / (12.0**4 + 40.0**4)) and flagged[0]
