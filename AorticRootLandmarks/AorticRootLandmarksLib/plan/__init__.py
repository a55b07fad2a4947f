"""The TAVI plan of one CT, from its landmarks: what ``<case>.plan.json`` and ``<case>.plan.png`` hold.

Pipeline: landmarks (world LPS mm) -> annulus plane (geometry) -> lumen measured on the CT in that plane
(annulus.measure_annulus) -> coronary heights (heights.py) -> C-arm S-curve and named views (carm.py) -> the plan
(record.py: :func:`make_plan`, :class:`Plan`) -> figure (figure.py), files (files.py) and ``index.html`` (html.py).

Conventions and every field: docs/PLAN.md. Numpy and SimpleITK only; matplotlib only inside
:func:`save_plan_figure`, so this package runs inside 3D Slicer.
"""

from .carm import CarmPlan, carm_plan, s_curve
from .figure import save_plan_figure
from .files import plan_files, write_detection_plan, write_plan
from .heights import NO_OSTIA, OstiumHeight, ostia_heights, point_heights_mm
from .html import write_index
from .record import DISCLAIMER, SCHEMA_VERSION, Plan, make_plan

__all__ = [
    "DISCLAIMER",
    "NO_OSTIA",
    "SCHEMA_VERSION",
    "CarmPlan",
    "OstiumHeight",
    "Plan",
    "carm_plan",
    "make_plan",
    "ostia_heights",
    "plan_files",
    "point_heights_mm",
    "s_curve",
    "save_plan_figure",
    "write_detection_plan",
    "write_index",
    "write_plan",
]
