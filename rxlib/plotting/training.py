"""Figures of training: loss/accuracy curves (Figures 6, loss comparison), the dense block diagram
(Figure 4), CutMix examples (Figure 5), held-out accuracy bars. Each function takes data and returns
a matplotlib Figure; none reads global state or saves anything."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.ticker import MaxNLocator

from rxlib.plotting.composite import rgb_composite
from rxlib.plotting.style import OKABE_ITO, category_colours

_METRIC_LABELS = {"loss": "loss (optimised objective)", "acc_softmax": "top-1 accuracy (softmax head)",
                  "acc_arc": "top-1 accuracy (arc-margin head)", "loss_softmax": "softmax loss (eq. 3)",
                  "loss_arc": "arc-margin loss (eq. 6)"}


def training_curves(histories: dict[str, pd.DataFrame], metrics: tuple[str, ...] = ("loss", "acc_softmax"),
                    splits: tuple[str, ...] = ("train", "val"), chance: float | None = None,
                    title: str = "") -> Figure:
    """One panel per metric and split, one line per named run, epochs on the x axis.

    Args:
        histories: ``{run name: history}`` with the columns of ``rxlib.train.loop.HISTORY_COLUMNS``.
        metrics: column suffixes, e.g. ``loss``, ``acc_softmax``, ``loss_arc``.
        splits: ``train`` and/or ``val`` (validation = held-out experiments).
        chance: drawn as a dotted line on accuracy panels.
    """
    fig = Figure(figsize=(4.2 * len(metrics), 3.2 * len(splits)), layout="constrained")
    axes = np.asarray(fig.subplots(len(splits), len(metrics), squeeze=False))
    for i, split in enumerate(splits):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            for colour, (name, history) in zip(category_colours(len(histories)), histories.items()):
                ax.plot(history["epoch"], history[f"{split}_{metric}"], marker="o", markersize=3, label=name,
                        color=colour)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
            if chance is not None and metric.startswith("acc"):
                ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
            split_name = "training" if split == "train" else "held-out validation"
            ax.set_title(f"{split_name}: {_METRIC_LABELS.get(metric, metric)}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
    handles, labels = axes[0, -1].get_legend_handles_labels()  # one key for every panel, outside the data
    fig.legend(handles, labels, loc="outside right upper", fontsize=7, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def dense_block_diagram(layers: pd.DataFrame, title: str = "") -> Figure:
    """Figure 4: a dense block drawn from its layer table (see
    :func:`rxlib.train.backbone_report.dense_block_structure`): each layer is a box of the channels
    it receives (the concatenation of the block input and every earlier layer's new feature maps)
    and the ``growth`` new maps it adds; arcs show each layer feeding every later one.

    Labels stay clear of the boxes: each arrow carries only the layer's name and the channels it adds,
    and the operations of a layer (the same for every layer of a block) are written once under the
    diagram, beside a legend of the two kinds of connection.
    """
    from matplotlib.lines import Line2D

    n = len(layers)
    step, box_w = 1.6, 0.6
    fig = Figure(figsize=(max(6.0, 1.45 * (n + 1) + 0.6), 4.8), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(n + 1) * step
    max_in = float(layers["out_channels"].max())
    arrow_colour, arc_colour = OKABE_ITO[3], OKABE_ITO[0]
    uniform = layers["bottleneck_channels"].nunique() == 1 and layers["growth"].nunique() == 1
    for k in range(n + 1):
        channels = layers["in_channels"].iloc[k] if k < n else layers["out_channels"].iloc[-1]
        height = 0.6 + 2.0 * channels / max_in
        ax.add_patch(Rectangle((x[k] - box_w / 2, -height / 2), box_w, height, facecolor="#c6dbef",
                               edgecolor=arrow_colour))
        label = "input" if k == 0 else f"after\nlayer {k}"
        ax.text(x[k], -height / 2 - 0.12, f"{label}\n{channels} ch", ha="center", va="top", fontsize=8)
        if k < n:
            row = layers.iloc[k]
            ax.add_patch(FancyArrowPatch((x[k] + box_w / 2, 0), (x[k + 1] - box_w / 2, 0), arrowstyle="-|>",
                                         mutation_scale=10, color=arrow_colour))
            name = str(row["layer"]).replace("denselayer", "layer ")
            detail = f"+{row['growth']} ch" if uniform else f"1x1: {row['bottleneck_channels']}\n3x3: +{row['growth']}"
            ax.text((x[k] + x[k + 1]) / 2, 0.08, f"{name}\n{detail}", ha="center", va="bottom", fontsize=7)
        for later in range(k + 2, n + 1):  # dense connectivity: this tensor reaches every later layer
            ax.add_patch(FancyArrowPatch((x[k], 1.35), (x[later], 1.35), connectionstyle="arc3,rad=-0.2",
                                         arrowstyle="-", color=arc_colour, alpha=0.6, linewidth=0.8))
    ax.set_xlim(x[0] - 0.6, x[-1] + 0.6)
    ax.set_ylim(-2.35, 1.35 + 0.11 * (x[-1] - x[0]) + 0.3)
    ax.axis("off")
    ax.set_title(title or "dense block: each layer adds growth-rate channels to the concatenated input", fontsize=10)
    first = layers.iloc[0]
    operations = (f"each layer: BN-ReLU-1x1 conv ({first['bottleneck_channels']} ch), BN-ReLU-3x3 conv "
                  f"(+{first['growth']} ch)" if uniform else "each layer: BN-ReLU-1x1 conv, BN-ReLU-3x3 conv")
    handles = [Line2D([], [], color=arrow_colour, marker=">", markersize=5, label=operations),
               Line2D([], [], color=arc_colour, label="dense connection: a tensor reaches every later layer")]
    fig.legend(handles=handles, loc="outside lower center", ncol=1, fontsize=7.5, frameon=False)
    return fig


def cutmix_panel(x_a: np.ndarray, x_b: np.ndarray, mixed: np.ndarray, box: tuple[int, int, int, int],
                 lam: float, labels: tuple[str, str] = ("", ""), title: str = "") -> Figure:
    """Figure 5: images x_A, x_B and their CutMix as RGB composites; the pasted box outlined.

    Args:
        x_a, x_b, mixed: (C, H, W) stacks.
        box: ``(y0, y1, x0, x1)`` of the region taken from x_B.
        lam: the share of x_A kept (the target weight of y_A, eq. 9).
    """
    fig = Figure(figsize=(9.6, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    y0, y1, x0, x1 = box
    captions = (f"$x_A$ {labels[0]}", f"$x_B$ {labels[1]}", f"CutMix: $\\lambda$ = {lam:.2f} of $x_A$")
    for ax, stack, caption in zip(axes, (x_a, x_b, mixed), captions):
        ax.imshow(rgb_composite(stack))
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="white",
                               linestyle="--", linewidth=1.2))
        ax.set_title(caption, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig


def accuracy_bars(table: pd.DataFrame, columns: tuple[str, ...] = ("acc_softmax", "acc_arc"),
                  chance: float | None = None, title: str = "") -> Figure:
    """Grouped bars of held-out accuracy per run (rows of ``table``, named by its ``run`` column)."""
    fig = Figure(figsize=(1.2 + 1.1 * len(table) * len(columns) / 2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(columns)
    positions = np.arange(len(table))
    for i, (colour, column) in enumerate(zip(category_colours(len(columns)), columns)):
        ax.bar(positions + (i - (len(columns) - 1) / 2) * width, table[column], width, label=column, color=colour)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set_xticks(positions, table["run"], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("held-out accuracy")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # off the bars
    if title:
        ax.set_title(title, fontsize=10)
    return fig
