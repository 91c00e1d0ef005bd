"""The held-out split used for training and evaluation: train experiments vs held-out experiments.

Training uses the labelled sites of the ``train`` split; validation uses the labelled sites of the
``test`` split, whose experiments (and so whose batch effects) never occur in training. The same
held-out images, with their labels ignored, are the unlabelled set for pseudo-labels (section 3.3:
the paper pseudo-labels the test experiments).

Images are normalised per experiment and channel (mean and standard deviation of all pixels of the
experiment's own images, labels not used), the usual correction of RxRx1's batch effects.

Two ways of holding the images: :class:`InMemorySites` reads every site once into a uint8 array (the
smoke profile: 1,728 sites of 6x64x64 are 42 MB and load in seconds, while decoding 6 PNGs per item
every epoch would dominate the training time on 2 cores); for the full data set
:class:`rxlib.data.RxRx1Dataset` streams from disk with the same per-experiment statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from rxlib.config import CELL_TYPES
from rxlib.data import RxRx1Dataset, load_site_stem, read_metadata
from rxlib.data.dataset import random_dihedral


class InMemorySites(Dataset):
    """Sites of ``table`` read once into memory, normalised per experiment, as RxRx1Dataset items.

    Args:
        root: data root.
        table: normalised metadata rows (see :func:`rxlib.data.read_metadata`); kept as :attr:`table`.
        augment: random flips and 90-degree rotations (torch's global RNG, seeded by the loop).
        normalize: ``experiment`` (per-experiment channel statistics of these rows' images) or ``none`` (x / 255).
        stats: ``{experiment: (mean (6,), std (6,))}`` to use instead of computing them from these rows.
    """

    def __init__(self, root: str | Path, table: pd.DataFrame, *, augment: bool = False,
                 normalize: str = "experiment", stats: dict | None = None) -> None:
        if normalize not in ("experiment", "none"):
            raise ValueError(f"normalize={normalize!r}; expected 'experiment' or 'none'")
        self.root = Path(root)
        self.table = table.reset_index(drop=True)
        self.augment = augment
        self.normalize = normalize
        if len(self.table) == 0:
            raise ValueError(f"no sites to load from {self.root}")
        self.images = np.stack([load_site_stem(self.root, stem) for stem in self.table["image_stem"]])
        self.stats = stats if stats is not None else experiment_stats(self.images, self.table["experiment"])
        self._experiment = self.table["experiment"].to_numpy()
        self._cell = np.array([CELL_TYPES.index(c) for c in self.table["cell_type"]])
        self._label = self.table["label"].to_numpy().astype(np.int64)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(self.images[index].astype(np.float32))
        if self.normalize == "experiment":
            mean, std = self.stats[self._experiment[index]]
            image = (image - mean[:, None, None]) / (std[:, None, None] + 1e-6)
        else:
            image = image / 255.0
        if self.augment:
            image = random_dihedral(image)
        cell_type = torch.zeros(len(CELL_TYPES), dtype=torch.float32)
        cell_type[self._cell[index]] = 1.0
        return {"image": image.contiguous(), "cell_type": cell_type,
                "label": torch.tensor(self._label[index], dtype=torch.int64), "index": index}


def experiment_stats(images: np.ndarray, experiments) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-experiment, per-channel mean and standard deviation of all pixels of ``images`` (N, C, H, W)."""
    experiments = np.asarray(experiments)
    out = {}
    for experiment in np.unique(experiments):
        pixels = images[experiments == experiment].astype(np.float64)
        mean = pixels.mean(axis=(0, 2, 3))
        std = pixels.std(axis=(0, 2, 3))
        out[str(experiment)] = (torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32))
    return out


@dataclass
class HeldOutSplit:
    """Datasets of one training run: ``train`` (labelled, train experiments), ``val`` (labelled,
    held-out experiments) and ``unlabelled`` (the held-out images, labels ignored)."""

    train: Dataset
    val: Dataset
    unlabelled: Dataset
    table: pd.DataFrame

    @property
    def n_val_classes(self) -> int:
        """Classes present in the validation set; chance accuracy is 1 / this."""
        return int(self.val.table["label"].nunique())


_SPLIT_CACHE: dict = {}


def held_out_split(root: str | Path, *, in_memory: bool = True, augment: bool = True,
                   normalize: str = "experiment") -> HeldOutSplit:
    """Train on the ``train`` experiments, validate on the ``test`` experiments of ``root``.

    In-memory splits are cached per process (keyed by root, its metadata file's modification time
    and the options), so that several models of one notebook read the images once.

    Raises:
        ValueError: the data root has no labelled sites in one of the splits.
    """
    root = Path(root).resolve()
    table = read_metadata(root)
    meta = root / "metadata.csv"
    key = (str(root), meta.stat().st_mtime_ns if meta.is_file() else None, in_memory, augment, normalize)
    if in_memory and key in _SPLIT_CACHE:
        return _SPLIT_CACHE[key]
    labelled = table[table["label"] >= 0]
    train_rows, val_rows = labelled[labelled["split"] == "train"], labelled[labelled["split"] == "test"]
    for name, rows in (("train", train_rows), ("test", val_rows)):
        if rows.empty:
            raise ValueError(f"{root}: no labelled sites in the {name} split; held-out evaluation needs both")
    unlabelled_rows = table[table["split"] == "test"]
    if in_memory:
        if normalize not in ("experiment", "none"):
            raise ValueError(f"in-memory sites support normalize 'experiment' or 'none', got {normalize!r}")
        train = InMemorySites(root, train_rows, augment=augment, normalize=normalize)
        unlabelled = InMemorySites(root, unlabelled_rows, augment=augment, normalize=normalize)
        # the validation sites are a subset of the unlabelled ones: same experiment statistics, no second read
        val = _subset(unlabelled, val_rows, augment=False)
        split = HeldOutSplit(train, val, unlabelled, table)
        _SPLIT_CACHE.clear()  # keep one data set in memory at a time
        _SPLIT_CACHE[key] = split
        return split
    stats = None
    if normalize in ("experiment", "plate"):
        from rxlib.data import stats as data_stats

        intensities, problems = data_stats.image_intensities(root, table, progress=False)
        if len(problems):
            raise ValueError(f"{root}: {len(problems)} unreadable images, first: {problems.iloc[0].to_dict()}")
        stats = data_stats.normalisation_stats(intensities, by=normalize)
    kw = {"normalize": normalize, "stats": stats}
    return HeldOutSplit(RxRx1Dataset(root, train_rows, augment=augment, **kw), RxRx1Dataset(root, val_rows, **kw),
                        RxRx1Dataset(root, unlabelled_rows, augment=augment, **kw), table)


def _subset(source: InMemorySites, rows: pd.DataFrame, augment: bool) -> InMemorySites:
    positions = source.table.reset_index().merge(rows[["site_id"]], on="site_id")["index"].to_numpy()
    subset = InMemorySites.__new__(InMemorySites)
    subset.root, subset.augment, subset.normalize, subset.stats = source.root, augment, source.normalize, source.stats
    subset.table = source.table.iloc[positions].reset_index(drop=True)
    subset.images = source.images[positions]
    subset._experiment, subset._cell, subset._label = (source._experiment[positions], source._cell[positions],
                                                       source._label[positions])
    return subset


__all__ = ["HeldOutSplit", "InMemorySites", "experiment_stats", "held_out_split"]
