"""Automated checks of a drawn figure, used by the tests of every figure function.

A journal rejects figures whose labels collide, that run off the page, whose colours have no key, or
whose integer axes carry ticks such as 2.5. These helpers draw the figure on its own canvas and compare
the renderer's window extents (display pixels), so they see what the PNG shows. Each returns a list of
human-readable problems; an empty list means the figure passed.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from matplotlib.transforms import Bbox

#: Pixels two extents may share before they count as overlapping (anti-aliasing, touching edges).
TOLERANCE_PX = 1.0


def _renderer(fig: Figure):
    if fig.canvas is None or not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _shown(text: Text) -> bool:
    return text.get_visible() and bool(text.get_text().strip()) and text.get_alpha() != 0


def figure_texts(fig: Figure) -> list[Text]:
    """Every text the figure draws: suptitles and figure texts, per axes the titles, axis labels, tick
    labels in view, annotations and legend entries, and figure legends."""
    texts: list[Text] = list(fig.texts)
    for sub in (fig._suptitle, getattr(fig, "_supxlabel", None), getattr(fig, "_supylabel", None)):
        if sub is not None:
            texts.append(sub)
    legends = list(fig.legends)
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        texts += _ticklabels_in_view(ax, "x") + _ticklabels_in_view(ax, "y") + list(ax.texts)
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for legend in legends:
        texts += list(legend.get_texts()) + [legend.get_title()]
    unique = {id(t): t for t in texts if t is not None and _shown(t)}
    return list(unique.values())


def _ticklabels_in_view(ax: Axes, axis: str) -> list[Text]:
    """Tick labels matplotlib draws: those of an axis that is on, at ticks within the view limits."""
    which = ax.xaxis if axis == "x" else ax.yaxis
    if not ax.axison or not which.get_visible():
        return []
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    span = (hi - lo) * 1e-9
    locs = ax.get_xticks() if axis == "x" else ax.get_yticks()
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [label for loc, label in zip(locs, labels) if lo - span <= loc <= hi + span]


def _extent(artist, renderer) -> Bbox:
    return artist.get_window_extent(renderer)


def _overlap(a: Bbox, b: Bbox, tol: float = TOLERANCE_PX) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > tol) and (min(a.y1, b.y1) - max(a.y0, b.y0) > tol)


def text_overlaps(fig: Figure) -> list[str]:
    """Pairs of texts whose drawn extents overlap."""
    renderer = _renderer(fig)
    boxes = [(t, _extent(t, renderer)) for t in figure_texts(fig)]
    return [f"text {a.get_text()!r} overlaps text {b.get_text()!r}"
            for (a, ea), (b, eb) in combinations(boxes, 2) if _overlap(ea, eb)]


def texts_outside(fig: Figure) -> list[str]:
    """Texts that reach beyond the figure's canvas (cut off in the saved file)."""
    renderer = _renderer(fig)
    canvas = fig.bbox
    problems = []
    for t in figure_texts(fig):
        e = _extent(t, renderer)
        if e.x0 < canvas.x0 - TOLERANCE_PX or e.y0 < canvas.y0 - TOLERANCE_PX or \
                e.x1 > canvas.x1 + TOLERANCE_PX or e.y1 > canvas.y1 + TOLERANCE_PX:
            problems.append(f"text {t.get_text()!r} reaches outside the figure ({e.bounds} vs {canvas.bounds})")
    return problems


def _boxes(ax: Axes) -> list[Rectangle]:
    """Drawn rectangles of the axes' data (bars, boxes of a diagram), not its background."""
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_visible()
            and p.get_width() != 0 and p.get_height() != 0]


def texts_over_boxes(fig: Figure) -> list[str]:
    """Annotations (``ax.text``) that overlap a rectangle of the data they do not sit inside of.

    A label written entirely inside a box is fine; one that straddles a box's edge is not."""
    renderer = _renderer(fig)
    problems = []
    for ax in fig.axes:
        boxes = [(p, _extent(p, renderer)) for p in _boxes(ax)]
        for t in ax.texts:
            if not _shown(t):
                continue
            e = _extent(t, renderer)
            for p, pe in boxes:
                inside = pe.x0 <= e.x0 and e.x1 <= pe.x1 and pe.y0 <= e.y0 and e.y1 <= pe.y1
                if _overlap(e, pe) and not inside:
                    problems.append(f"text {t.get_text()!r} overlaps the edge of a box at {pe.bounds}")
                    break
    return problems


def legends_over_data(fig: Figure) -> list[str]:
    """Legends drawn inside an axes that cover its bars, line points or scatter points."""
    renderer = _renderer(fig)
    problems = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        box = _extent(legend, renderer)
        hit = any(_overlap(box, _extent(p, renderer)) for p in _boxes(ax))
        points = [line.get_xydata() for line in ax.lines if line.get_visible()]
        points += [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
        for xy in points:
            if len(xy):
                px = ax.transData.transform(np.asarray(xy, dtype=float))
                hit |= bool(np.any((px[:, 0] > box.x0) & (px[:, 0] < box.x1) & (px[:, 1] > box.y0) & (px[:, 1] < box.y1)))
        if hit:
            problems.append(f"the legend of axes {ax.get_title()!r} covers its data")
    return problems


def _colours(ax: Axes) -> set[tuple]:
    """Distinct colours that encode data in ``ax`` (bars, lines, scatter points)."""
    from matplotlib.colors import to_rgba

    found: set[tuple] = set()
    for p in _boxes(ax):
        found.add(tuple(np.round(to_rgba(p.get_facecolor()), 3)))
    for line in ax.lines:
        if line.get_visible() and len(line.get_xdata()) > 1:
            found.add(tuple(np.round(to_rgba(line.get_color()), 3)))
    for c in ax.collections:
        if isinstance(c, PathCollection) and len(c.get_offsets()):
            if c.get_array() is not None and len(np.unique(c.get_array())) > 1:
                found.add(("mapped", id(c)))
                found.add(("mapped-2", id(c)))
            for colour in c.get_facecolors():
                found.add(tuple(np.round(colour, 3)))
    return found


def missing_legends(fig: Figure) -> list[str]:
    """Axes whose data use several colours with no legend (on the axes or the figure) or colour bar."""
    has_key = bool(fig.legends) or any(getattr(ax, "_colorbar", None) is not None for ax in fig.axes)
    problems = []
    for ax in fig.axes:
        if getattr(ax, "_colorbar", None) is not None:
            continue
        if len(_colours(ax)) > 1 and ax.get_legend() is None and not has_key:
            problems.append(f"axes {ax.get_title()!r} uses {len(_colours(ax))} colours and has no legend")
    return problems


def non_integer_ticks(ax: Axes, axis: str = "x") -> list[str]:
    """Tick labels in view on ``axis`` that are numbers with a fractional part (``2.5`` on a class axis)."""
    _renderer(ax.figure)
    labels = _ticklabels_in_view(ax, axis)
    bad = []
    for label in labels:
        text = label.get_text().replace("\u2212", "-")
        try:
            value = float(text)
        except ValueError:
            continue
        if value != int(value):
            bad.append(text)
    return [f"{axis} axis of {ax.get_title()!r} has non-integer ticks {bad}"] if bad else []


def layout_problems(fig: Figure) -> list[str]:
    """All figure-wide checks: overlapping texts, texts off the canvas, texts across boxes, legends
    over data and colours without a legend."""
    return (text_overlaps(fig) + texts_outside(fig) + texts_over_boxes(fig) + legends_over_data(fig)
            + missing_legends(fig))
