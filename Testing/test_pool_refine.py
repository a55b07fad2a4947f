"""benchmarks/pool_refine.py: pooled validation figures from bench_refine JSONs, by hand on tiny data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pool_refine.py"
_spec = importlib.util.spec_from_file_location("pool_refine", SCRIPT)
pool_refine = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pool_refine)


def _result(stage1: list[list[float]], stage2: list[list[float]], landmarks=("RCC", "LCC")) -> dict:
    pairs = enumerate(zip(stage1, stage2, strict=True))
    cases = [{"case": f"c{i}", "stage1_mm": a, "stage2_mm": b} for i, (a, b) in pairs]
    return {"landmarks": list(landmarks), "cases": cases}


def test_pooled_figures_are_over_all_points_of_all_sets():
    a = _result([[1.0, 2.0], [3.0, 12.0]], [[0.5, 0.5], [1.0, 6.0]])
    b = _result([[4.0, 4.0]], [[2.0, 11.0]])
    one = pool_refine.pooled([a, b], 1)
    errors = np.array([1.0, 2.0, 3.0, 12.0, 4.0, 4.0])
    assert one["n"] == 6 and one["median"] == pytest.approx(3.5) and one["mean"] == pytest.approx(errors.mean())
    assert one["p95"] == pytest.approx(np.percentile(errors, 95)) and one["max"] == 12.0
    assert (one["over_5"], one["over_10"]) == (1, 1)
    assert one["sets"] == [{"median": 2.5, "p95": pytest.approx(np.percentile([1, 2, 3, 12], 95))},
                           {"median": 4.0, "p95": 4.0}]  # fmt: skip
    two = pool_refine.pooled([a, b], 2)
    assert (two["over_5"], two["over_10"], two["max"]) == (2, 1, 11.0)


def test_results_over_other_landmarks_are_refused_in_one_line(tmp_path, capsys):
    a, b = _result([[1.0, 1.0]], [[1.0, 1.0]]), _result([[1.0]], [[1.0]], landmarks=("RCC",))
    with pytest.raises(ValueError, match="different landmarks"):
        pool_refine.pooled([a, b], 2)
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, result in zip(paths, (a, b), strict=True):
        path.write_text(json.dumps(result), encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        pool_refine.main([str(p) for p in paths])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different landmarks" in err[0]


def test_the_table_has_a_row_per_stage_with_each_set(tmp_path, capsys):
    path = tmp_path / "val-x.json"
    path.write_text(json.dumps(_result([[1.0, 3.0]], [[0.5, 1.5]])), encoding="utf-8")
    assert pool_refine.main([str(path)]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert "val-x median / p95" in rows[0] and len(rows) == 4
    assert rows[3].startswith("| 1 + 2 | 1.00 / ") and "| 1.00 |" in rows[3]  # pooled median of 0.5 and 1.5
