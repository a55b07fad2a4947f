"""Table and plot nodes: the annulus measurements as a table node, the S-curve of the C-arm as a plot chart.

A table node is what Slicer shows in a table view (and in the module panel through ``qMRMLTableView``), saves with
the scene (``.tsv``) and exports; a plot chart is what a plot view draws. Angles are degrees in the C-arm convention
of :mod:`geometry` (LAO/CRAN positive, RAO/CAUD negative). Works with 3D Slicer and the ``slicer-core`` wheel.

Example (Slicer's Python console)::

    from AorticRootLandmarksLib import mrml_tables
    table = mrml_tables.set_measurement_table(slicer.mrmlScene, [("Circumcircle diameter", 24.1, "mm")])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import slicer
import vtk

#: Columns of a measurement table: what is measured, the number (NaN when it cannot be measured), its unit.
MEASUREMENT_COLUMNS: tuple[str, str, str] = ("Measurement", "Value", "Unit")
#: Columns of the S-curve tables.
LAO_COLUMN, CRAN_COLUMN, VIEW_COLUMN = "LAO (+) / RAO (-) deg", "CRAN (+) / CAUD (-) deg", "View"

Row = tuple[str, float | None, str]


def _write_columns(node: slicer.vtkMRMLTableNode, columns: Mapping[str, Sequence]) -> None:
    """Replace a table node's contents: one column per item, numbers as doubles (None -> NaN), text as strings."""
    table = vtk.vtkTable()
    for name, values in columns.items():
        values = list(values)
        numeric = all(v is None or isinstance(v, (int, float, np.floating, np.integer)) for v in values)
        array = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        array.SetName(name)
        for value in values:
            if numeric:
                array.InsertNextValue(np.nan if value is None else float(value))
            else:
                array.InsertNextValue(str(value))
        table.AddColumn(array)
    was_modifying = node.StartModify()
    node.SetLocked(False)
    node.SetAndObserveTable(table)
    node.SetLocked(True)  # computed from the points: not edited in the table view
    node.EndModify(was_modifying)


def set_measurement_table(
    scene: slicer.vtkMRMLScene,
    rows: Sequence[Row],
    node: slicer.vtkMRMLTableNode | None = None,
    node_name: str = "Annulus measurements",
) -> slicer.vtkMRMLTableNode:
    """Write measurement rows into a locked table node (columns :data:`MEASUREMENT_COLUMNS`), creating it if needed.

    Args:
        rows: (label, value or None, unit) per measurement, in display order; None (not measurable now) becomes NaN.
        node: table to rewrite; None creates one named ``node_name``.

    Returns:
        The table node.
    """
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", node_name)
    labels, values, units = zip(*rows, strict=True) if rows else ((), (), ())
    _write_columns(node, dict(zip(MEASUREMENT_COLUMNS, (labels, values, units), strict=True)))
    return node


def read_measurement_table(node: slicer.vtkMRMLTableNode) -> list[tuple[str, float, str]]:
    """The rows of a table written by :func:`set_measurement_table`: (label, value (NaN if none), unit)."""
    table = node.GetTable()
    labels, values, units = (table.GetColumnByName(name) for name in MEASUREMENT_COLUMNS)
    return [(labels.GetValue(i), float(values.GetValue(i)), units.GetValue(i)) for i in range(table.GetNumberOfRows())]


def set_s_curve_chart(
    scene: slicer.vtkMRMLScene,
    lao_deg: Sequence[float],
    cran_deg: Sequence[float],
    views: Mapping[str, tuple[float, float]],
    chart: slicer.vtkMRMLPlotChartNode | None = None,
    node_name: str = "S-curve",
) -> slicer.vtkMRMLPlotChartNode:
    """Plot the S-curve (the C-arm angles that show the annulus plane edge-on) with the named views on it.

    The chart holds two series, each on its own table node: the curve (a line through ``lao_deg``, ``cran_deg``)
    and the views (labelled markers). Re-running with ``chart`` rewrites the same nodes.

    Args:
        lao_deg, cran_deg: (N,) S-curve samples, degrees.
        views: {title: (lao_deg, cran_deg)}, e.g. {"three-cusp": (-5.2, 8.1)}.
        chart: chart to update; None creates one named ``node_name`` with its series and tables.

    Returns:
        The plot chart node.
    """
    if chart is None:
        chart = _new_s_curve_chart(scene, node_name)
    curve, marks = chart.GetNthPlotSeriesNode(0), chart.GetNthPlotSeriesNode(1)
    _write_columns(curve.GetTableNode(), {LAO_COLUMN: np.asarray(lao_deg, dtype=float).tolist(),
                                          CRAN_COLUMN: np.asarray(cran_deg, dtype=float).tolist()})
    _write_columns(marks.GetTableNode(), {LAO_COLUMN: [float(a[0]) for a in views.values()],
                                          CRAN_COLUMN: [float(a[1]) for a in views.values()],
                                          VIEW_COLUMN: list(views)})
    return chart


def _new_s_curve_chart(scene: slicer.vtkMRMLScene, node_name: str) -> slicer.vtkMRMLPlotChartNode:
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", node_name)
    chart.SetTitle("S-curve: annulus plane seen edge-on")
    chart.SetXAxisTitle(LAO_COLUMN)
    chart.SetYAxisTitle(CRAN_COLUMN)
    for title, line in (("S-curve", True), ("implant views", False)):
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{node_name} {title} table")
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{node_name} {title}")
        series.SetAndObserveTableNodeID(table.GetID())
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetXColumnName(LAO_COLUMN)
        series.SetYColumnName(CRAN_COLUMN)
        if line:
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        else:
            series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleNone)
            series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
            series.SetLabelColumnName(VIEW_COLUMN)
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return chart
