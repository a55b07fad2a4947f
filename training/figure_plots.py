"""Drawing for training/figures.py: grouped box plots with values beyond the axis marked by their number (as the
paper's figures do), success-detection-rate curves, the numbers under each figure, PNG + SVG output.

Data come as ``{series: {category: values}}``: series (e.g. losses) are coloured boxes side by side within each
category (e.g. landmarks or sigma values). matplotlib is imported inside the functions.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

#: Font sizes that stay readable when a figure is shown at half width.
_FONT = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 12, "legend.fontsize": 10}
#: At most this many values beyond the axis are written out per box; the rest are counted.
_SHOWN_ABOVE = 3


def _styled(draw):
    """Draw with the readable font sizes of :data:`_FONT`."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        from matplotlib import rc_context

        with rc_context(_FONT):
            return draw(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float, columns: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(1, columns, squeeze=False)[0]


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float).ravel()
    return values[np.isfinite(values)]


def axis_top(groups: list) -> float:
    """Upper y limit: a little above the largest upper whisker (q3 + 1.5 IQR, at most the largest value), so that a
    few far outliers do not squash the boxes; all values fit when none lies beyond the whiskers."""
    whiskers, largest = [], 0.0
    for values in map(_finite, groups):
        if values.size:
            q1, q3 = np.percentile(values, [25, 75])
            whiskers.append(values[values <= q3 + 1.5 * (q3 - q1)].max())
            largest = max(largest, values.max())
    if not whiskers:
        return 1.0
    top = max(whiskers) * 1.15
    return max(largest * 1.05 if largest <= top else top, 1e-6)


def mark_above(ax, x: float, values, top: float) -> None:
    """Values beyond the axis: a triangle at the top edge with their numbers (largest first)."""
    above = np.sort(_finite(values)[_finite(values) > top])[::-1]
    if not above.size:
        return
    text = ", ".join(f"{v:.3g}" for v in above[:_SHOWN_ABOVE])
    if above.size > _SHOWN_ABOVE:
        text += f" +{above.size - _SHOWN_ABOVE}"
    ax.plot([x], [top], marker="^", color="black", markersize=6, clip_on=False, zorder=5)
    ax.annotate(text, (x, top), xytext=(0, -9), textcoords="offset points", ha="center", va="top", fontsize=8,
                rotation=90 if above.size > 1 else 0)  # fmt: skip


def _draw_boxes(ax, series: dict[str, dict], categories: list, colors) -> list[float]:
    """Boxes of every series in every category; returns each series's x position in the first category."""
    groups = [series[s].get(c, []) for s in series for c in categories]
    top = axis_top(groups)
    width = 0.8 / max(1, len(series))
    firsts = []
    for i, (label, data) in enumerate(series.items()):
        positions = [c + (i - (len(series) - 1) / 2) * width for c in range(len(categories))]
        firsts.append(positions[0])
        values = [_finite(data.get(category, [])) for category in categories]
        kept = [(p, v) for p, v in zip(positions, values, strict=True) if v.size]
        if not kept:
            continue
        boxes = ax.boxplot([v for _, v in kept], positions=[p for p, _ in kept], widths=width * 0.85,
                           patch_artist=True, flierprops={"markersize": 3}, medianprops={"color": "black"})  # fmt: skip
        for patch in boxes["boxes"]:
            patch.set(facecolor=colors[i % len(colors)], alpha=0.8)
        for position, v in kept:
            mark_above(ax, position, v, top)
        ax.plot([], [], "s", color=colors[i % len(colors)], label=label)  # legend entry
    ax.set_ylim(0, top)
    ax.set_xticks(range(len(categories)), [str(c) for c in categories])
    ax.grid(axis="y", alpha=0.3)
    return firsts


def _colors():
    from matplotlib import colormaps

    return list(colormaps["tab10"].colors)


@_styled
def grouped_boxes(series: dict[str, dict], categories: list, xlabel: str, ylabel: str):
    """One box per (series, category); the legend names the series."""
    single = categories == [""]  # one category: the series name their boxes, no legend
    width = 1.2 * len(series) + 1.5 if single else 1.1 * len(categories) * max(1, len(series)) ** 0.5 + 2.5
    fig, (ax,) = _figure(max(4.0 if single else 5.0, width), 4.5)
    positions = _draw_boxes(ax, series, categories, _colors())
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if single:
        ax.set_xticks(positions, list(series))
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@_styled
def panels(data: dict[str, dict], categories: list, xlabel: str, ylabels: dict[str, str]):
    """:func:`grouped_boxes` side by side, one panel per key of `data`."""
    fig, axes = _figure(5.5 * len(data) + 1.5, 4.5, len(data))
    for ax, (key, series) in zip(axes, data.items(), strict=True):
        _draw_boxes(ax, series, categories, _colors())
        ax.set(xlabel=xlabel, ylabel=ylabels[key])
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@_styled
def sdr_curves(curves: dict[str, dict], thresholds) -> object:
    """Fraction of errors within each threshold, one panel per group (landmark or "all"), one line per series."""
    fig, axes = _figure(4.2 * len(curves) + 1.8, 4.2, len(curves))
    colors = _colors()
    largest = max([5.0] + [float(_finite(v).max()) for s in curves.values() for v in s.values() if _finite(v).size])
    grid = np.linspace(0.0, min(largest, 10.0), 300)
    for ax, (group, series) in zip(axes, curves.items(), strict=True):
        for i, (label, values) in enumerate(series.items()):
            values = np.asarray(values, dtype=float).ravel()  # NaN counts as a miss
            ax.plot(grid, [(values <= t).mean() if values.size else np.nan for t in grid], color=colors[i % 10],
                    label=label, lw=2)  # fmt: skip
        for t in thresholds:
            ax.axvline(t, color="gray", lw=0.6, alpha=0.5)
        ax.set(xlabel="threshold (mm)", ylabel="success detection rate", ylim=(0, 1.02), title=group)
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def numbers(series: dict[str, dict]) -> list[str]:
    """A Markdown table: series as rows, categories as columns, median [q1, q3] (n) in each cell."""
    categories = list(dict.fromkeys(c for data in series.values() for c in data))
    header = ["| |" + "".join(f" {c or 'value'} |" for c in categories), "|---|" + "---|" * len(categories)]
    rows = []
    for label, data in series.items():
        cells = []
        for category in categories:
            values = _finite(data.get(category, []))
            q1, median, q3 = np.percentile(values, [25, 50, 75]) if values.size else (np.nan,) * 3
            cells.append(f" {median:.2f} [{q1:.2f}, {q3:.2f}] ({values.size}) |" if values.size else " – |")
        rows.append(f"| {label} |" + "".join(cells))
    return header + rows


def sdr_numbers(curves: dict[str, dict], thresholds) -> list[str]:
    """A Markdown table of the success detection rates at `thresholds`, per group and series."""
    lines = ["| | |" + "".join(f" {t:g} mm |" for t in thresholds), "|---|---|" + "---|" * len(thresholds)]
    for group, series in curves.items():
        for label, values in series.items():
            values = np.asarray(values, dtype=float).ravel()
            rates = "".join(f" {(values <= t).mean():.0%} |" if values.size else " – |" for t in thresholds)
            lines.append(f"| {group} | {label} |{rates}")
    return lines


@_styled
def save(fig, stem: Path) -> None:
    """``stem.png`` (150 dpi) and ``stem.svg``."""
    fig.savefig(Path(stem).with_suffix(".png"), dpi=150)
    fig.savefig(Path(stem).with_suffix(".svg"))
