"""Figures of the data set (notebook 01): Figures 1-3, the plate layout and the realism check.

Each function takes data and returns a matplotlib Figure; none reads global state or saves.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..config import CELL_TYPES, CHANNELS
from matplotlib.ticker import MaxNLocator

from .composite import rgb_composite, stretch
from .style import OKABE_ITO, category_colours

#: Plate-layout colours: greys for wells without samples, Okabe-Ito for the three kinds of sample.
WELL_TYPE_COLOURS = {"empty (border, not imaged)": "#f0f0f0", "not used": "#d9d9d9", "treatment": OKABE_ITO[3],
                     "positive_control": OKABE_ITO[4], "negative_control": OKABE_ITO[2]}
#: The two sources of the realism check.
SOURCE_PALETTE = {"real RxRx1": OKABE_ITO[0], "synthetic": OKABE_ITO[1]}


def channel_panel(stack: np.ndarray, title: str = "") -> Figure:
    """Figure 1: the six channels of one site side by side, each named by its stain."""
    fig, axes = plt.subplots(1, len(stack), figsize=(2.4 * len(stack), 2.9), constrained_layout=True)
    for c, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(stretch(stack[c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"w{c + 1} {CHANNELS[c]}".replace(" (", "\n("), fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def composite_panel(stack: np.ndarray, title: str = "") -> Figure:
    """Figure 1 (right): the RGB composite of a site, with the colour legend."""
    fig, ax = plt.subplots(figsize=(4.2, 4.6), constrained_layout=True)
    ax.imshow(rgb_composite(stack), interpolation="nearest")
    ax.axis("off")
    from .composite import CHANNEL_COLOURS
    handles = [Patch(color=CHANNEL_COLOURS[c], label=f"w{c + 1} {CHANNELS[c].split(' (')[0]}") for c in range(len(stack))]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, fontsize=7, frameon=False)
    ax.set_title(title or "RGB composite", fontsize=10)
    return fig


def class_distribution(samples: pd.Series, title: str = "") -> Figure:
    """Figure 2: number of training samples of every treatment class, and the class sets S_x."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), constrained_layout=True,
                                      gridspec_kw={"width_ratios": [3, 1]})
    left.bar(samples.index.to_numpy(), samples.to_numpy(), width=1.0, color=OKABE_ITO[3])
    left.set_xlabel("class id")
    left.set_ylabel("training samples (wells)")
    left.set_ylim(0, samples.max() * 1.1)
    left.set_title(title or "Samples per class", fontsize=10)
    # class sets S_x: x (samples per class) on a numeric axis, so that many sets do not crowd the labels
    sets = samples.value_counts().sort_index()
    right.bar(sets.index.to_numpy(), sets.to_numpy(), width=0.8, color=OKABE_ITO[0])
    if len(sets) <= 8:  # counts over the bars only while they have room
        for x, n in zip(sets.index, sets.to_numpy()):
            right.text(x, n, str(int(n)), ha="center", va="bottom", fontsize=8)
    right.set_ylim(0, sets.max() * 1.15)
    right.set_xlim(sets.index.min() - 1, sets.index.max() + 1)  # one set alone still gets an integer axis
    right.set_xlabel("samples per class $x$ (set $S_x$)")
    right.set_ylabel("classes")
    right.set_title("Class sets", fontsize=10)
    for axis in (left.xaxis, left.yaxis, right.xaxis, right.yaxis):  # ids and counts are integers
        axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if len(sets) <= 6:  # few sets: a tick under each bar
        right.set_xticks(sets.index.to_numpy())
    return fig


def channel_mean_distribution(intensities: pd.DataFrame, title: str = "") -> Figure:
    """Figure 3: distribution of the per-image mean pixel value, one curve per channel."""
    fig, ax = plt.subplots(figsize=(7.5, 3.6), constrained_layout=True)
    palette = category_colours(len(CHANNELS))
    for c in sorted(intensities["channel"].unique()):
        values = intensities.loc[intensities["channel"] == c, "mean"]
        label = f"w{c} {CHANNELS[c - 1].split(' (')[0]} (var {values.var():.1f})"
        # cut=0: the density ends at the smallest and largest mean seen (a mean pixel value is never
        # below 0, and the curve must not suggest values outside the data)
        sns.kdeplot(values, ax=ax, label=label, color=palette[c - 1], fill=False, warn_singular=False, cut=0)
    ax.set_xlabel("mean pixel value of an image")
    ax.set_ylabel("density")
    ax.set_ylim(bottom=0)
    ax.set_title(title or "Channel-wise distribution of the mean pixel value", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def site_panels(stack: np.ndarray | None, title: str = "") -> list[Figure]:
    """Figure 1's two views of one site, :func:`channel_panel` and :func:`composite_panel`; none when
    ``stack`` is None (the site is not there, e.g. the real pieces are absent)."""
    if stack is None:
        return []
    return [channel_panel(stack, title), composite_panel(stack, title)]


def plate_layout(table: pd.DataFrame, experiment: str, plate: int) -> Figure:
    """Which wells of a 16 x 24 plate hold treatments, positive and negative controls."""
    wells = table[(table["experiment"] == experiment) & (table["plate"] == plate)].drop_duplicates("well")
    kinds = list(WELL_TYPE_COLOURS)
    grid = np.zeros((16, 24), dtype=int)
    grid[1:-1, 1:-1] = 1
    for well, well_type in zip(wells["well"], wells["well_type"]):
        grid[ord(well[0]) - ord("A"), int(well[1:]) - 1] = kinds.index(well_type)
    fig, ax = plt.subplots(figsize=(8, 5.2), constrained_layout=True)
    ax.imshow(grid, cmap=ListedColormap(list(WELL_TYPE_COLOURS.values())), vmin=0, vmax=len(kinds) - 1)
    ax.set_xticks(range(24), [f"{i + 1:02d}" for i in range(24)], fontsize=6)
    ax.set_yticks(range(16), [chr(ord("A") + i) for i in range(16)], fontsize=7)
    ax.set_xticks(np.arange(-0.5, 24), minor=True)
    ax.set_yticks(np.arange(-0.5, 16), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.8)
    ax.tick_params(which="minor", length=0)
    counts = wells["well_type"].value_counts()
    handles = [Patch(color=WELL_TYPE_COLOURS[k], label=f"{k} ({counts.get(k, 0)})" if k in counts else k) for k in kinds]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=7, frameon=False)
    ax.set_title(f"Plate layout: {experiment}, plate {plate}", fontsize=10)
    return fig


def realism_intensity(real: pd.DataFrame, synthetic: pd.DataFrame) -> Figure:
    """Per-channel mean pixel value per cell type, real RxRx1 images beside the synthetic set."""
    both = pd.concat([real.assign(source="real RxRx1"), synthetic.assign(source="synthetic")], ignore_index=True)
    both["channel"] = "w" + both["channel"].astype(str)
    grid = sns.catplot(data=both, x="channel", y="mean", hue="source", col="cell_type", kind="box",
                       palette=SOURCE_PALETTE,
                       col_order=[c for c in CELL_TYPES if c in set(both["cell_type"])], height=3.0, aspect=0.9,
                       fliersize=1.5, linewidth=0.8)
    grid.set_axis_labels("channel", "mean pixel value of an image")
    grid.figure.suptitle("Realism check: per-channel intensity, real vs synthetic", fontsize=10)
    grid.figure.subplots_adjust(top=0.84)  # room for the title inside the canvas
    return grid.figure


def realism_nuclei(real: pd.DataFrame, synthetic: pd.DataFrame, reference_side: int = 512) -> Figure:
    """Nuclei per field (scaled to a ``reference_side``-pixel square field) per cell type, real vs synthetic."""
    frames = []
    for name, frame in (("real RxRx1", real), ("synthetic", synthetic)):
        w1 = frame[frame["channel"] == 1].copy()
        w1["nuclei per 512x512 field"] = w1["n_nuclei"] * reference_side ** 2 / (w1["height"] * w1["width"])
        frames.append(w1.assign(source=name))
    both = pd.concat(frames, ignore_index=True)
    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    sns.boxplot(data=both, x="cell_type", y="nuclei per 512x512 field", hue="source", ax=ax, palette=SOURCE_PALETTE,
                order=[c for c in CELL_TYPES if c in set(both["cell_type"])], fliersize=1.5, linewidth=0.8)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)  # off the boxes
    ax.set_title("Realism check: nuclei per field (Otsu on w1)", fontsize=10)
    return fig
