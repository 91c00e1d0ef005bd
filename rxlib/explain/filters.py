"""Figure 10: the 1x1 filters of DenseNet's dense layers, their bands and blocks (Sharma &
Krishnamurthi 2022, section 4.6).

- :data:`FIGURE10_LAYERS` and :func:`figure10_layers`: the paper's two layers and their counterparts in
  a smaller DenseNet; :func:`figure10_weights`: their ``(out, in)`` filter matrices.
- :func:`filter_band_block_stats` measures the "vertical bands" (filters whose weights are nearly equal
  over the input channels, a plain average) and "blocks" (near-duplicate filters, adjacent or not);
  :func:`filter_unit_flags` gives the same flags per filter; :func:`filter_stats_table` one row per layer.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.cluster.hierarchy import DisjointSet
from torch import nn


#: The two layers of the paper's Figure 10: (dense block, dense layer), 1-based.
FIGURE10_LAYERS: tuple[tuple[int, int], ...] = ((1, 6), (2, 2))


def figure10_layers(model: nn.Module, layers: Sequence[tuple[int, int]] = FIGURE10_LAYERS) -> list[tuple[int, int]]:
    """The model's counterparts of the paper's Figure 10 layers: the same dense block, the layer number
    clipped to the block's length (DenseNet-161 has 6 layers in block 1; the tiny DenseNet has 2, so
    ``(1, 6)`` becomes ``(1, 2)``, the last layer of block 1, like DL(6) in DenseNet-161).

    Raises:
        ValueError: not a DenseNet, or a block the model lacks.
    """
    inner = getattr(model, "inner", model)
    if getattr(inner, "family", None) != "densenet":
        raise ValueError(f"Figure 10 needs a DenseNet, got {getattr(inner, 'arch', type(inner).__name__)!r}")
    out = []
    for block, layer in layers:
        try:
            dense_block = getattr(inner.features, f"denseblock{block}")
        except AttributeError:
            raise ValueError(f"{inner.arch} has no denseblock{block}") from None
        out.append((block, min(layer, len(dense_block))))
    return out


def figure10_weights(model: nn.Module, layers: Sequence[tuple[int, int]] = FIGURE10_LAYERS) -> dict[str, np.ndarray]:
    """The 1x1 filter matrices ``(out, in)`` of the Figure 10 layers, keyed ``'DB(1),DL(6)'`` etc.

    Raises:
        ValueError: not a DenseNet, or a block/layer the model lacks (from
            :func:`rxlib.models.dense_layer_1x1_weights`, naming the valid range).
    """
    from rxlib.models import dense_layer_1x1_weights

    model = getattr(model, "inner", model)
    return {f"DB({b}),DL({l})": dense_layer_1x1_weights(model, b, l).double().numpy() for b, l in layers}


def _filter_matrix(weights: np.ndarray | torch.Tensor) -> np.ndarray:
    """A 1x1 convolution's weights as a float64 ``(out_channels, in_channels)`` matrix.

    Accepts ``(out, in)`` or the convolution's own ``(out, in, 1, 1)``.

    Raises:
        ValueError: any other shape, or an empty matrix.
    """
    w = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    w = w.astype(np.float64)
    if w.ndim == 4 and w.shape[2:] == (1, 1):
        w = w[:, :, 0, 0]
    if w.ndim != 2 or min(w.shape) < 1:
        raise ValueError(f"weights must be an (out_channels, in_channels) matrix, got shape {w.shape}")
    return w


def _bands_and_duplicates(w: np.ndarray, band_tol: float, duplicate_cos: float) -> tuple[np.ndarray, np.ndarray]:
    """``band (out,)``: the filters whose weights are nearly equal over the inputs; ``close (out, out)``:
    pairs of different filters whose weight vectors have a cosine of at least ``duplicate_cos``."""
    rms = np.sqrt((w ** 2).mean(axis=1))
    band = (w.std(axis=1) <= band_tol * rms) & (rms > 0)
    unit = w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
    close = unit @ unit.T >= duplicate_cos
    np.fill_diagonal(close, False)
    return band, close


def filter_unit_flags(weights: np.ndarray | torch.Tensor, *, band_tol: float = 0.1,
                      duplicate_cos: float = 0.99) -> pd.DataFrame:
    """Per filter of a 1x1 weight matrix ``(out, in)``: ``band`` and ``has_duplicate`` flags (0/1), with the
    definitions of :func:`filter_band_block_stats`, whose ``band_fraction`` and ``duplicate_fraction`` are
    their means (the units of the Figure 10 verdicts, :func:`rxlib.explain.verdicts.filter_verdicts`)."""
    band, close = _bands_and_duplicates(_filter_matrix(weights), band_tol, duplicate_cos)
    return pd.DataFrame({"band": band.astype(float), "has_duplicate": close.any(axis=1).astype(float)})


def filter_band_block_stats(weights: np.ndarray | torch.Tensor, *, band_tol: float = 0.1,
                            duplicate_cos: float = 0.99) -> dict[str, float]:
    """Measure the repeated bands and blocks of a 1x1 filter matrix (paper section 4.6).

    A filter (row k of ``(out_channels, in_channels)``) is a *band* when its weights are nearly the
    same for every input channel: ``std(w_k) <= band_tol * rms(w_k)`` (an average of the input, the
    paper's ``I_avg,k``). Two filters are *near-duplicates* when the cosine of their weight vectors
    (an uncentred correlation, defined also for constant rows) is at least ``duplicate_cos``; the
    duplicate groups are the connected components, and a *block* is a run of adjacent duplicates.

    Returns:
        ``n_filters``, ``n_inputs``, ``band_fraction`` (share of band filters), ``n_duplicate_filters``
        (filters with at least one near-duplicate), ``duplicate_fraction``, ``n_duplicate_groups``,
        ``largest_group``, ``n_blocks`` (runs of >= 2 adjacent near-duplicate filters) and
        ``redundant_fraction`` (1 - groups-plus-singletons / filters: the share of filters that
        add nothing new).
    """
    w = _filter_matrix(weights)
    n_out, n_in = w.shape
    band, close = _bands_and_duplicates(w, band_tol, duplicate_cos)
    groups = DisjointSet(range(n_out))
    for i, j in zip(*np.nonzero(np.triu(close))):
        groups.merge(int(i), int(j))
    subsets = groups.subsets()
    adjacent = np.array([close[k, k + 1] for k in range(n_out - 1)], dtype=bool)
    n_blocks = int(np.sum(adjacent[1:] & ~adjacent[:-1]) + (adjacent[0] if len(adjacent) else 0))
    has_dup = close.any(axis=1)
    return {
        "n_filters": n_out, "n_inputs": n_in,
        "band_fraction": float(band.mean()),
        "n_duplicate_filters": int(has_dup.sum()),
        "duplicate_fraction": float(has_dup.mean()),
        "n_duplicate_groups": int(sum(len(s) > 1 for s in subsets)),
        "largest_group": int(max(len(s) for s in subsets)),
        "n_blocks": n_blocks,
        "redundant_fraction": float(1.0 - len(subsets) / n_out),
    }


def filter_stats_table(model: nn.Module, layers: Sequence[tuple[int, int]] = FIGURE10_LAYERS, **kwargs) -> pd.DataFrame:
    """:func:`filter_band_block_stats` for each Figure 10 layer of a model, one row per layer
    (``layers`` as for :func:`figure10_weights`; see :func:`figure10_layers` for smaller DenseNets)."""
    return pd.DataFrame([{"layer": name, **filter_band_block_stats(w, **kwargs)}
                         for name, w in figure10_weights(model, layers).items()])


def figure10_layer_table(layers: Sequence[tuple[int, int]], arch: str,
                         paper: Sequence[tuple[int, int]] = FIGURE10_LAYERS) -> pd.DataFrame:
    """Which layer of ``arch`` stands for each of the paper's Figure 10 layers (:func:`figure10_layers`):
    columns ``paper``, ``here`` (``'DB(b),DL(l)'``) and ``substituted`` (True where they differ)."""
    return pd.DataFrame([{"paper": f"DB({pb}),DL({pl})", "here": f"{arch} DB({b}),DL({l})",
                          "substituted": (pb, pl) != (b, l)} for (pb, pl), (b, l) in zip(paper, layers)])


def initial_model(train: dict) -> nn.Module:
    """The network of a training configuration (``run.config.train``) as it was before training: built
    with the same architecture, classes and embedding size after seeding torch with the run's seed, the
    baseline against which the trained filters' bands count (section 4.6)."""
    from rxlib.models import build_model

    torch.manual_seed(int(train.get("seed", 0)))
    return build_model(train["arch"], train["n_classes"], embedding_dim=train["embedding_dim"])


#: Columns of :func:`trained_vs_initial_table`.
COMPARISON_COLUMNS = ("model", "layer", "n_filters", "n_inputs", "band_fraction", "duplicate_fraction",
                      "n_duplicate_groups", "n_blocks", "redundant_fraction")


def trained_vs_initial_table(trained: nn.Module, initial: nn.Module,
                             layers: Sequence[tuple[int, int]] = FIGURE10_LAYERS) -> pd.DataFrame:
    """:func:`filter_stats_table` of the trained network and of the same network at initialisation
    (:func:`initial_model`), one row per (model, layer), columns :data:`COMPARISON_COLUMNS`."""
    frame = pd.concat([filter_stats_table(trained, layers).assign(model="trained"),
                       filter_stats_table(initial, layers).assign(model="initialisation")], ignore_index=True)
    return frame[list(COMPARISON_COLUMNS)]
