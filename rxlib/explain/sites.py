"""Sites to explain: one split of a data root in memory, batches of its items, and examples to show.

The explanation notebooks need images normalised exactly as the models saw them (per experiment and
channel: per-image normalisation would erase the intensity phenotypes), but often only one split.
:func:`split_sites` reads just that split; because the train and test experiments are disjoint and the
statistics are per experiment, its items equal those of :func:`rxlib.train.data.held_out_split`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rxlib.train.data import InMemorySites

_SITES_CACHE: dict = {}
#: Splits kept in memory per process (a smoke training split is 28 MB).
_SITES_CACHE_SIZE = 4


def split_sites(root: str | Path, split: str = "test", *, labelled_only: bool = True,
                table: pd.DataFrame | None = None) -> InMemorySites:
    """The sites of one split of ``root`` in memory, normalised per experiment, not augmented.

    Splits read without an explicit ``table`` are cached per process (keyed by the root, its
    ``metadata.csv`` modification time and the arguments; the last few are kept), so a notebook that
    asks twice reads the images once. Treat the result as read-only.

    Args:
        root: data root.
        split: ``'train'`` or ``'test'`` (the held-out experiments).
        labelled_only: keep only sites with a label (>= 0).
        table: the metadata (:func:`rxlib.data.read_metadata`), read if None.

    Raises:
        ValueError: an unknown split, or no site left.
    """
    from rxlib.data import read_metadata

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if table is None:
        meta = Path(root).resolve() / "metadata.csv"
        key = (str(meta.parent), meta.stat().st_mtime_ns if meta.is_file() else None, split, labelled_only)
        if key not in _SITES_CACHE:
            while len(_SITES_CACHE) >= _SITES_CACHE_SIZE:
                _SITES_CACHE.pop(next(iter(_SITES_CACHE)))
            _SITES_CACHE[key] = split_sites(root, split, labelled_only=labelled_only, table=read_metadata(root))
        return _SITES_CACHE[key]
    rows = table[table["split"] == split]
    # statistics from every site of the split's experiments (labelled or not), as held_out_split does
    sites = InMemorySites(root, rows, augment=False, normalize="experiment")
    if labelled_only:
        keep = np.flatnonzero(sites.table["label"].to_numpy() >= 0)
        if len(keep) == 0:
            raise ValueError(f"{root}: no labelled sites in the {split} split")
        sites = subset_sites(sites, keep)
    return sites


def subset_sites(sites: InMemorySites, positions: Sequence[int] | np.ndarray) -> InMemorySites:
    """The items at ``positions`` of an :class:`InMemorySites`, with the same normalisation statistics."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size and (positions.min() < 0 or positions.max() >= len(sites)):
        raise IndexError(f"positions out of range 0..{len(sites) - 1}")
    out = InMemorySites.__new__(InMemorySites)
    out.root, out.augment, out.normalize, out.stats = sites.root, sites.augment, sites.normalize, sites.stats
    out.table = sites.table.iloc[positions].reset_index(drop=True)
    out.images = sites.images[positions]
    out._experiment, out._cell, out._label = (sites._experiment[positions], sites._cell[positions],
                                              sites._label[positions])
    return out


def site_batch(dataset, positions: Sequence[int] | np.ndarray | None = None) -> dict[str, torch.Tensor]:
    """Stack items of a data set into tensors: ``image (B, C, H, W)``, ``cell_type (B, 4)``, ``label (B,)``.

    Args:
        dataset: anything whose items are dicts with ``image``, ``cell_type`` and ``label``.
        positions: item indices (default: all).
    """
    positions = range(len(dataset)) if positions is None else [int(p) for p in positions]
    items = [dataset[p] for p in positions]
    if not items:
        raise ValueError("no positions given")
    return {key: torch.stack([torch.as_tensor(item[key]) for item in items]) for key in ("image", "cell_type", "label")}


def sample_positions(table: pd.DataFrame, n: int, *, by: str = "cell_type", seed: int = 0) -> np.ndarray:
    """Up to ``n`` row positions of ``table``, spread evenly over the groups of column ``by``, sorted.

    Deterministic for a seed; all rows when ``n >= len(table)``.
    """
    if n >= len(table):
        return np.arange(len(table))
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(table[by].to_numpy() == g) for g in sorted(table[by].unique())]
    per_group = max(1, n // len(groups))
    chosen = [rng.choice(g, size=min(per_group, len(g)), replace=False) for g in groups]
    return np.sort(np.concatenate(chosen))


def pick_examples(predictions: pd.DataFrame, *, by: str = "cell_type", well_type: str = "treatment") -> pd.DataFrame:
    """One example per group (cell type): the correctly classified site of ``well_type`` with the
    highest top-1 probability (falling back to the most confident site when none is correct).

    Args:
        predictions: :func:`rxlib.train.evaluate.predictions_table` rows (in the data set's order:
            the row position is the item index, kept in column ``position``).

    Returns:
        One row per group, with ``position`` and ``correct`` added.
    """
    frame = predictions.reset_index(drop=True).assign(position=lambda f: np.arange(len(f)))
    frame["correct"] = frame["pred_softmax"] == frame["label"]
    frame = frame[frame["well_type"] == well_type]
    if frame.empty:
        raise ValueError(f"no {well_type} sites among the predictions")
    ranked = frame.sort_values(["correct", "top1_prob"], ascending=False)
    return ranked.groupby(by, sort=True).head(1).sort_values(by).reset_index(drop=True)


def best_recognised_group(predictions: pd.DataFrame, *, well_type: str = "treatment",
                          by: Sequence[str] = ("cell_type", "label")) -> dict:
    """The (cell type, class) whose sites the model recognises best: highest mean probability of the
    true class among the ``well_type`` sites (for "a given cell type and reagent label", Figure 12).

    Returns:
        ``{'cell_type': ..., 'label': ..., 'n': sites, 'mean_prob_true': ..., 'positions': item indices}``.
    """
    frame = predictions.reset_index(drop=True).assign(position=lambda f: np.arange(len(f)))
    frame = frame[frame["well_type"] == well_type]
    if frame.empty:
        raise ValueError(f"no {well_type} sites among the predictions")
    means = frame.groupby(list(by))["prob_true"].mean().sort_values(ascending=False)
    key = means.index[0]
    chosen = frame[(frame[list(by)] == pd.Series(key, index=list(by))).all(axis=1)]
    return {**dict(zip(by, key)), "n": len(chosen), "mean_prob_true": float(means.iloc[0]),
            "positions": chosen["position"].to_numpy()}
