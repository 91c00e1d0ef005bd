"""Worked examples of the training pieces on real sites, for the figures (Figure 5: CutMix)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rxlib.data import load_site_stem
from rxlib.train.cutmix import cutmix


@dataclass
class CutMixExample:
    """Two sites, their CutMix and its parameters; stacks are (C, H, W) uint8-valued floats."""

    x_a: np.ndarray
    x_b: np.ndarray
    mixed: np.ndarray
    box: tuple[int, int, int, int]
    lam: float
    site_a: str
    site_b: str
    label_a: int
    label_b: int


def cutmix_example(root: str | Path, table: pd.DataFrame, seed: int = 0, min_box_share: float = 0.15) -> CutMixExample:
    """CutMix of two treated training sites of different classes and the same cell type, drawn with
    ``seed`` by :func:`rxlib.train.cutmix.cutmix` itself (the loop's code path), on raw intensities.

    The pair and draw are re-drawn (deterministically) until the pasted box covers at least
    ``min_box_share`` of the image, so that the figure shows a visible box.
    """
    rows = table[(table["split"] == "train") & (table["well_type"] == "treatment") & (table["label"] >= 0)]
    if rows["label"].nunique() < 2:
        raise ValueError("need treated training sites of at least two classes for a CutMix example")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(100):
        a = rows.iloc[int(rng.integers(len(rows)))]
        others = rows[(rows["label"] != a["label"]) & (rows["cell_type"] == a["cell_type"])]
        if others.empty:
            continue
        b = others.iloc[int(rng.integers(len(others)))]
        stacks = torch.from_numpy(np.stack([load_site_stem(root, a["image_stem"]),
                                            load_site_stem(root, b["image_stem"])]).astype(np.float32))
        labels = torch.tensor([int(a["label"]), int(b["label"])])
        mixed, target, boxes = cutmix(stacks, labels, alpha=1.0, generator=generator, return_boxes=True)
        if target.y_b[0] == labels[1] and 1.0 - float(target.lam[0]) >= min_box_share:
            return CutMixExample(stacks[0].numpy(), stacks[1].numpy(), mixed[0].numpy(), boxes[0],
                                 float(target.lam[0]), a["site_id"], b["site_id"], int(a["label"]), int(b["label"]))
    raise RuntimeError("no CutMix draw with a visible box in 100 tries")
