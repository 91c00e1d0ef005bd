"""Helpers for explaining sites: batches of a data set's items, samples spread over groups, and the
examples to show.

The sites themselves come from :func:`rxlib.data.splits.split_sites` (a lazy
:class:`~rxlib.data.RxRx1Dataset` normalised as the models saw them); these helpers read only the
items they are asked for.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch


def site_batch(dataset, positions: Sequence[int] | np.ndarray | None = None, *,
               keys: Sequence[str] = ("image", "cell_type", "label")) -> dict[str, torch.Tensor]:
    """Stack items of a data set into tensors: ``image (B, C, H, W)``, ``cell_type (B, 4)``, ``label (B,)``.

    Args:
        dataset: anything whose items are dicts with ``image``, ``cell_type`` and ``label``.
        positions: item indices (default: all).
        keys: the fields to stack (the items need only these).
    """
    positions = range(len(dataset)) if positions is None else [int(p) for p in positions]
    if not len(positions):
        raise ValueError("no positions given")
    out = None
    for i, p in enumerate(positions):  # filled in place: the batch is held once, not also as a list of items
        item = dataset[p]
        if out is None:
            out = {key: torch.empty((len(positions), *torch.as_tensor(item[key]).shape),
                                    dtype=torch.as_tensor(item[key]).dtype) for key in keys}
        for key in out:
            out[key][i] = torch.as_tensor(item[key])
    return out


def sample_positions(table: pd.DataFrame, n: int, *, by: str = "cell_type", seed: int = 0) -> np.ndarray:
    """At most ``n`` row positions of ``table``, spread evenly over the groups of column ``by``, sorted.

    Each group gives ``n // groups`` rows (or all it has). With more groups than ``n`` (e.g. ``by='label'``
    on the 1,139 classes of RxRx1) ``n`` groups are drawn and give one row each, so the sample never
    exceeds ``n`` sites, whatever the number of classes. Deterministic for a seed; all rows when
    ``n >= len(table)``.
    """
    if n >= len(table):
        return np.arange(len(table))
    if n <= 0:
        return np.arange(0)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(table[by].to_numpy() == g) for g in sorted(table[by].unique())]
    if len(groups) > n:
        keep = np.sort(rng.choice(len(groups), size=n, replace=False))
        return np.sort(np.array([rng.choice(groups[k]) for k in keep], dtype=np.int64))
    per_group = n // len(groups)
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


def example_titles(examples: pd.DataFrame) -> list[str]:
    """One title per row of :func:`pick_examples`: ``'<cell type>, class <label> (p=<top-1 probability>)'``."""
    return [f"{r.cell_type}, class {r.label} (p={r.top1_prob:.2f})" for r in examples.itertuples()]


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
