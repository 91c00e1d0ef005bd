"""Figures of the explanations: CAM overlays on 6-channel images (Figure 11), channel attention
(Figure 12), t-SNE of templates and features (Figures 7-9) and 1x1 filters (Figure 10).

Every function takes arrays (numpy or torch) and returns a matplotlib Figure; saving is the caller's
(:func:`rxlib.plotting.save_figure`). matplotlib is imported inside the functions.

The figures are plain ``matplotlib.figure.Figure`` objects, not registered with pyplot (as in
:mod:`rxlib.plotting.training`): ``%matplotlib inline`` does not draw them on its own at the end of a
cell, so a notebook cell that ends with ``fig`` shows each figure exactly once. CAMs use viridis and
categories the Okabe-Ito colours (:mod:`rxlib.plotting.style`), both readable with colour-vision
deficiencies.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from rxlib.config import CHANNELS
from rxlib.plotting.composite import rgb_composite, stretch
from rxlib.plotting.style import GREY, MAGNITUDE_CMAP, OKABE_ITO, category_colours

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


def _array(x, name: str, ndim: int) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    return x


def _check_pair(image: np.ndarray, cam: np.ndarray) -> None:
    if cam.shape != image.shape[1:]:
        raise ValueError(f"cam of shape {cam.shape} does not match the image's {image.shape[1:]}; upsample it")


def plot_cam_overlay(image, cam, *, alpha: float = 0.45, cmap: str = MAGNITUDE_CMAP, title: str | None = None) -> Figure:
    """RGB composite of a ``(C, H, W)`` image, the CAM, and the CAM over the composite (Figure 11).

    Args:
        image: ``(C, H, W)`` stack, C <= 6 (w1 first).
        cam: ``(H, W)`` map at the image's resolution (values scaled to [0, 1] for display).
        alpha: opacity of the CAM over the composite.
        cmap: colour map of the CAM.
        title: figure title.
    """
    from matplotlib.figure import Figure

    image, cam = _array(image, "image", 3), _array(cam, "cam", 2)
    _check_pair(image, cam)
    cam = stretch(cam, 0.0, 100.0)
    rgb = rgb_composite(image)
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(rgb)
    axes[0].set_title("composite")
    im = axes[1].imshow(cam, cmap=cmap, vmin=0, vmax=1)
    axes[1].set_title("Grad-CAM")
    axes[2].imshow(rgb)
    axes[2].imshow(cam, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    axes[2].set_title("overlay")
    for ax in axes:
        ax.set_axis_off()
    fig.colorbar(im, ax=axes, shrink=0.8, label="attention")
    if title:
        fig.suptitle(title)
    return fig


def plot_channel_overlays(image, cam, *, alpha: float = 0.45, cmap: str = MAGNITUDE_CMAP,
                          channel_names: Sequence[str] | None = None, attention=None,
                          title: str | None = None) -> Figure:
    """Each channel in grey with the CAM over it, one panel per channel.

    Args:
        image: ``(C, H, W)`` stack (any C).
        cam: ``(H, W)`` map at the image's resolution.
        channel_names: panel titles (default: the RxRx1 stains for C = 6, else ``ch1``..).
        attention: optional ``(C,)`` channel attention (eq. 15 or another method) shown in the titles.
    """
    from matplotlib.figure import Figure

    image, cam = _array(image, "image", 3), _array(cam, "cam", 2)
    _check_pair(image, cam)
    n = image.shape[0]
    names = list(channel_names) if channel_names is not None else (
        [f"w{i + 1} {c.split(' ')[0]}" for i, c in enumerate(CHANNELS)] if n == len(CHANNELS) else [f"ch{i + 1}" for i in range(n)])
    if len(names) != n:
        raise ValueError(f"{len(names)} channel names for {n} channels")
    if attention is not None:
        attention = _array(attention, "attention", 1)
        if len(attention) != n:
            raise ValueError(f"attention has {len(attention)} values for {n} channels")
    cam = stretch(cam, 0.0, 100.0)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(3 * cols, 3 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(stretch(image[i]), cmap="gray")
        ax.imshow(cam, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        ax.set_title(names[i] if attention is None else f"{names[i]}: {attention[i]:.2f}", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def plot_channel_attention(attention: Mapping[str, Sequence[float]] | Sequence[float], *,
                           channel_names: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Bar chart of attention per channel (Figure 12); a mapping plots one group of bars per method."""
    from matplotlib.figure import Figure

    series = dict(attention) if isinstance(attention, Mapping) else {"attention": attention}
    series = {k: _array(v, f"attention[{k}]", 1) for k, v in series.items()}
    n = len(next(iter(series.values())))
    if any(len(v) != n for v in series.values()):
        raise ValueError("all attention vectors must have the same length")
    names = list(channel_names) if channel_names is not None else [f"w{i + 1}" for i in range(n)]
    fig = Figure(figsize=(1.2 * n + 2, 3.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(series)
    for j, (colour, (label, values)) in enumerate(zip(category_colours(len(series)), series.items())):
        ax.bar(np.arange(n) + (j - (len(series) - 1) / 2) * width, values, width, label=label, color=colour)
    ax.set_xticks(np.arange(n), names)
    ax.set_xlabel("channel")
    ax.set_ylabel("attention (max-normalised)")
    if len(series) > 1:  # beside the axes: inside it would cover the tallest bars (often w6)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title)
    return fig


def plot_filter_heatmaps(weights: Mapping[str, np.ndarray], *, stats: Mapping[str, Mapping[str, float]] | None = None,
                         cmap: str = "coolwarm") -> Figure:
    """1x1 filter matrices as heat maps (Figure 10): x = filter (output channel), y = input channel,
    so a filter whose weights are equal over the inputs is a vertical band of one colour.

    Args:
        weights: name -> ``(out_channels, in_channels)`` matrix.
        stats: optional name -> :func:`rxlib.explain.filters.filter_band_block_stats` output, quoted in titles.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(weights), 4), layout="constrained")
    axes = fig.subplots(1, len(weights), squeeze=False)
    for ax, (name, w) in zip(axes.flat, weights.items()):
        w = _array(w, f"weights[{name}]", 2)
        lim = float(np.abs(w).max()) or 1.0
        im = ax.imshow(w.T, aspect="auto", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_xlabel("filter (output channel)")
        ax.set_ylabel("input channel")
        title = name
        if stats and name in stats:
            s = stats[name]
            title += f"\nbands {s['band_fraction']:.0%}, duplicates {s['duplicate_fraction']:.0%}, blocks {s['n_blocks']}"
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def plot_tsne(frames: Mapping[str, pd.DataFrame], *, title: str | None = None) -> Figure:
    """Side-by-side t-SNE scatter plots (Figures 7-9) from :func:`rxlib.explain.embeddings.tsne_frame`
    outputs; junk classes (column ``junk``) in blue, the others in grey (or one Okabe-Ito colour per
    ``label`` when there is no junk column), with one legend for all panels."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5 * len(frames), 4.2), layout="constrained")
    axes = fig.subplots(1, len(frames), squeeze=False)
    for ax, (name, frame) in zip(axes.flat, frames.items()):
        if "junk" in frame:
            junk = frame["junk"].to_numpy(bool)
            ax.scatter(frame.loc[~junk, "x"], frame.loc[~junk, "y"], s=6, c=GREY, label="actual classes")
            ax.scatter(frame.loc[junk, "x"], frame.loc[junk, "y"], s=6, c=OKABE_ITO[3], label="junk classes")
        elif "label" in frame:
            labels = sorted(frame["label"].unique())
            for colour, label in zip(category_colours(len(labels)), labels):
                part = frame[frame["label"] == label]
                ax.scatter(part["x"], part["y"], s=6, c=colour, label=f"class {label}")
        else:
            ax.scatter(frame["x"], frame["y"], s=6)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    keyed = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            keyed.setdefault(label, handle)
    handles, labels = list(keyed.values()), list(keyed)
    if handles:  # one key for all panels, below them, so that it covers no point
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize=8,
                   markerscale=2, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def plot_cam_grid(images: Sequence, cams: Sequence, *, titles: Sequence[str] | None = None,
                  channel: int | None = None, channel_name: str | None = None, alpha: float = 0.45,
                  cmap: str = MAGNITUDE_CMAP, title: str | None = None) -> Figure:
    """Several Grad-CAM examples, one row each: the image, the CAM, and the CAM over the image (Figure 11).

    Args:
        images: ``(C, H, W)`` stacks (or one ``(N, C, H, W)`` array).
        cams: matching ``(H, W)`` maps at the images' resolution.
        titles: one per row (shown over the first panel).
        channel: show this channel (0-based) in grey instead of the RGB composite (e.g. the channel
            that carries a cue); ``channel_name`` labels it.
    """
    from matplotlib.figure import Figure

    images = [_array(im, "image", 3) for im in images]
    cams = [_array(c, "cam", 2) for c in cams]
    if len(images) != len(cams) or not images:
        raise ValueError(f"got {len(images)} images and {len(cams)} CAMs; need the same non-zero number")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} rows")
    fig = Figure(figsize=(7.5, 2.5 * len(images)), layout="constrained")
    axes = fig.subplots(len(images), 3, squeeze=False)
    shown = "composite" if channel is None else (channel_name or f"channel {channel + 1}")
    for row, (image, cam) in enumerate(zip(images, cams)):
        _check_pair(image, cam)
        cam = stretch(cam, 0.0, 100.0)
        base = rgb_composite(image) if channel is None else stretch(image[channel])
        kw = {} if channel is None else {"cmap": "gray"}
        ax = axes[row]
        ax[0].imshow(base, **kw)
        im = ax[1].imshow(cam, cmap=cmap, vmin=0, vmax=1)
        ax[2].imshow(base, **kw)
        ax[2].imshow(cam, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        for a, name in zip(ax, (shown, "Grad-CAM", "overlay")):
            a.set_axis_off()
            a.set_title(name if row == 0 else "", fontsize=9)
        if titles is not None:
            ax[0].text(-0.05, 0.5, titles[row], transform=ax[0].transAxes, rotation=90, ha="right", va="center",
                       fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="attention")
    if title:
        fig.suptitle(title)
    return fig


def plot_grad_camo(summary: pd.DataFrame, *, group: str = "cell_type", hue: str | None = None,
                   title: str | None = None) -> Figure:
    """Grad-CAMO per group (bars) against the cell-area fraction a uniform map would score (black ticks).

    Args:
        summary: :func:`rxlib.explain.gradcamo.grad_camo_summary` output (columns ``group``,
            ``grad_camo``, ``cell_fraction``), optionally stacked for several models in column ``hue``.
    """
    from matplotlib.figure import Figure

    hues = [None] if hue is None else list(dict.fromkeys(summary[hue]))
    groups = list(dict.fromkeys(summary[group]))
    fig = Figure(figsize=(1.3 * len(groups) + 2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(hues)
    x = np.arange(len(groups))
    for j, h in enumerate(hues):
        part = summary if h is None else summary[summary[hue] == h]
        part = part.set_index(group).reindex(groups)
        offset = (j - (len(hues) - 1) / 2) * width
        ax.bar(x + offset, part["grad_camo"], width, label=h if h is not None else "Grad-CAMO",
               color=category_colours(len(hues))[j])
        ax.hlines(part["cell_fraction"], x + offset - width / 2, x + offset + width / 2, colors="k",
                  label="cell-area fraction (uniform map)" if j == 0 else None)
    ax.set_xticks(x, [str(g) for g in groups])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of attention on cells")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title)
    return fig


def plot_randomisation(summary: pd.DataFrame, *, threshold: float | None = None, title: str | None = None) -> Figure:
    """Adebayo et al.'s Figure 2 as lines: mean Spearman similarity of each method's explanations to the
    trained model's, as the model is randomised block by block from the top (x: the block randomised at
    each step); the label-randomisation score of each method as a marker at the right.

    Args:
        summary: :attr:`rxlib.explain.sanity.SanityReport.summary` (columns ``test``, ``step``, ``block``,
            ``method``, ``spearman``).
        threshold: the pass line (e.g. :data:`rxlib.explain.sanity.SPEARMAN_THRESHOLD`), drawn dashed.
    """
    from matplotlib.figure import Figure

    cascade = summary[summary["test"] == "model parameters"]
    labels = summary[summary["test"] == "labels"]
    methods = list(dict.fromkeys(summary["method"]))
    blocks = list(dict.fromkeys(cascade.sort_values("step")["block"]))
    fig = Figure(figsize=(max(5.0, 0.55 * len(blocks) + 3.5), 3.6), layout="constrained")
    ax = fig.add_subplot()
    colours = category_colours(len(methods))
    for colour, method in zip(colours, methods):
        part = cascade[cascade["method"] == method].sort_values("step")
        ax.plot(part["step"], part["spearman"], marker="o", color=colour, label=method)
        shuffled = labels.loc[labels["method"] == method, "spearman"]
        if len(shuffled):
            ax.plot([len(blocks) + 1], [float(shuffled.iloc[0])], marker="D", color=colour, linestyle="none")
    ticks = list(range(1, len(blocks) + 1)) + ([len(blocks) + 1] if len(labels) else [])
    ax.set_xticks(ticks, blocks + (["shuffled labels"] if len(labels) else []), rotation=45, ha="right")
    if threshold is not None:
        ax.axhline(threshold, color=GREY, linestyle="--", linewidth=1, label=f"pass below {threshold:g}")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("randomised down to (cascading, top first)")
    ax.set_ylabel("Spearman with the trained model")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
