"""The held-out split used for training, evaluation and explanation: train experiments vs held-out
experiments.

Training uses the labelled sites of the ``train`` split; validation uses the labelled sites of the
``test`` split, whose experiments (and so whose batch effects) never occur in training, and, where the test
treatments carry no labels (the Kaggle layout), also those of training experiments held out for it
(:func:`validation_experiments`). The same
held-out images, with their labels ignored, are the unlabelled set for pseudo-labels (section 3.3:
the paper pseudo-labels the test experiments).

Images are normalised per experiment and channel (mean and standard deviation of all pixels of the
experiment's own sites, labelled or not, labels not used), the usual correction of RxRx1's batch
effects. The statistics come from one table for the whole data root, computed while the site store
is decoded (``storage='store'``/``'memory'``) or from the PNGs (``'png'``) by the same function
(:func:`rxlib.data.stats.normalisation_stats`), so every storage gives the same items.

Every split is an :class:`~rxlib.data.RxRx1Dataset`; with ``storage='store'`` none holds its images
in memory (see :mod:`rxlib.data.store`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import STORAGES, RxRx1Dataset
from .metadata import read_metadata

#: Splits kept per process: a ``memory`` split holds its images, so only the newest one is kept.
_SPLIT_CACHE: dict = {}
_SITES_CACHE: dict = {}
_SITES_CACHE_SIZE = 8


@dataclass
class HeldOutSplit:
    """Datasets of one training run: ``train`` (labelled, train experiments), ``val`` (labelled,
    held-out experiments) and ``unlabelled`` (the held-out images, labels ignored)."""

    train: RxRx1Dataset
    val: RxRx1Dataset
    unlabelled: RxRx1Dataset
    table: pd.DataFrame

    @property
    def n_val_classes(self) -> int:
        """Classes present in the validation set; chance accuracy is 1 / this."""
        return int(self.val.table["label"].nunique())


def _metadata_key(root: Path) -> tuple:
    meta = root / "metadata.csv"
    return str(root), meta.stat().st_mtime_ns if meta.is_file() else None


def root_sites(root: str | Path, *, storage: str = "store", normalize: str = "experiment",
               workers: int | None = None, progress: bool = True) -> RxRx1Dataset:
    """Every site of ``root`` (no augmentation) normalised with the data root's statistics; the
    splits below are :meth:`~rxlib.data.RxRx1Dataset.subset`\\ s of it (cached per process).

    Raises:
        ValueError: unknown ``storage`` or ``normalize``.
    """
    if storage not in STORAGES:
        raise ValueError(f"storage={storage!r}; expected one of {STORAGES}")
    root = Path(root).resolve()
    key = (*_metadata_key(root), storage, normalize)
    if key in _SPLIT_CACHE:
        return _SPLIT_CACHE[key]
    table = read_metadata(root)
    stats = None
    if normalize in ("experiment", "plate") and storage == "png":
        from .stats import image_intensities, normalisation_stats

        intensities, problems = image_intensities(root, table, progress=progress)
        if len(problems):
            raise ValueError(f"{root}: {len(problems)} unreadable images, first: {problems.iloc[0].to_dict()}")
        stats = normalisation_stats(intensities, by=normalize)
    sites = RxRx1Dataset(root, table, sites=sorted(table["site"].unique()), normalize=normalize, stats=stats,
                         storage=storage, workers=workers, progress=progress)
    if storage == "memory":  # keep one data set's images in memory at a time
        for old in [k for k in _SPLIT_CACHE if k[2] == "memory"]:
            del _SPLIT_CACHE[old]
    _SPLIT_CACHE[key] = sites
    return sites


def validation_experiments(table: pd.DataFrame) -> list[str]:
    """Training experiments held out for validation: none where the ``test`` split has labelled
    treatments (the official release, the synthetic set); else (the Kaggle layout, whose test
    treatments carry no labels) the last training experiment of each cell type that has at least two,
    so that accuracy over the siRNA treatments, the paper's headline, is measured on experiments
    (and batch effects) never seen in training."""
    test = table[table["split"] == "test"]
    if ((test["well_type"] == "treatment") & (test["label"] >= 0)).any():
        return []
    train = table[table["split"] == "train"]
    out = []
    for _, part in train.groupby("cell_type", sort=True):
        experiments = sorted(part["experiment"].unique())
        if len(experiments) >= 2:
            out.append(experiments[-1])
    return out


def held_out_split(root: str | Path, *, storage: str = "store", augment: bool = True,
                   normalize: str = "experiment", workers: int | None = None,
                   progress: bool = True, cue: bool = False, shuffle_labels: bool = False) -> HeldOutSplit:
    """Train on the ``train`` experiments, validate on the ``test`` experiments of ``root``.

    Where the test treatments carry no labels (the Kaggle layout), the experiments of
    :func:`validation_experiments` leave the training set and join the validation set, next to the
    labelled test controls; the unlabelled (pseudo-label) set stays the ``test`` split.

    Args:
        root: data root.
        storage: ``store`` (read per item from the site store, prepared on first use), ``memory``
            (the store's sites in RAM: small sets) or ``png`` (decode per item); see
            :class:`~rxlib.data.RxRx1Dataset`.
        augment: random flips and rotations of the ``train`` and ``unlabelled`` items.
        normalize: ``experiment`` (default), ``plate``, ``image`` or ``none``.
        workers: processes decoding the store if it has to be prepared.
        progress: a progress bar while the store (or, for ``png``, the statistics) is prepared.
        cue: draw the spurious, class-coded cue of :mod:`rxlib.data.cue` into the training items (the
            cheating model of notebook 07); validation and unlabelled items stay clean.
        shuffle_labels: permute the training labels among the training items (seed 0; the label
            randomisation test, :mod:`rxlib.explain.sanity`); validation labels stay true.

    Raises:
        ValueError: the data root has no labelled sites in one of the splits.
    """
    sites = root_sites(root, storage=storage, normalize=normalize, workers=workers, progress=progress)
    table = sites.table
    labelled = table["label"].to_numpy() >= 0
    test = part_mask(table, "test")
    train_pos = np.flatnonzero(labelled & part_mask(table, "train"))
    val_pos = np.flatnonzero(labelled & part_mask(table, "validation"))
    for name, positions in (("train", train_pos), ("test", val_pos)):
        if len(positions) == 0:
            raise ValueError(f"{sites.root}: no labelled sites in the {name} part (rxlib.data.splits.part_mask); "
                             "training and held-out evaluation need both")
    train = sites.subset(train_pos, augment=augment)
    if cue:
        from .cue import SpuriousCue

        train = train.with_cue(SpuriousCue.for_labels(train.table["label"]))
    if shuffle_labels:
        train = train.with_shuffled_labels(seed=0)
    return HeldOutSplit(train, sites.subset(val_pos, augment=False), sites.subset(np.flatnonzero(test), augment=augment),
                        table)


SPLIT_PARTS = ("train", "test", "validation")


def part_mask(table: pd.DataFrame, part: str) -> np.ndarray:
    """Rows of ``table`` in ``part``: ``train`` (the training experiments: the ``train`` split less the
    :func:`validation_experiments`), ``test`` (the ``test`` split) or ``validation`` (what
    :func:`held_out_split` validates on: the ``test`` split and the validation experiments).

    Raises:
        ValueError: an unknown part.
    """
    if part not in SPLIT_PARTS:
        raise ValueError(f"split must be one of {SPLIT_PARTS}, got {part!r}")
    test = table["split"].to_numpy() == "test"
    held = table["experiment"].isin(validation_experiments(table)).to_numpy()
    if part == "train":
        return (table["split"].to_numpy() == "train") & ~held
    return test if part == "test" else (test | held)


def split_sites(root: str | Path, split: str = "validation", *, labelled_only: bool = True,
                table: pd.DataFrame | None = None, storage: str = "store") -> RxRx1Dataset:
    """The sites of one part of ``root`` (:func:`part_mask`), normalised per experiment, not augmented:
    a lazy data set (``storage='store'``: items are read from the site store when asked for).

    With ``labelled_only`` its items equal those of :func:`held_out_split`'s ``val``
    (``split='validation'``) and ``train`` (``'train'``, without augmentation). Results are cached per
    process (keyed by the root, its ``metadata.csv`` modification time and the arguments); treat them
    as read-only.

    Args:
        root: data root.
        split: ``'train'``, ``'test'`` or ``'validation'`` (the held-out sites every model is scored on;
            the ``test`` split itself where its treatments are labelled).
        labelled_only: keep only sites with a label (>= 0).
        table: the metadata (:func:`rxlib.data.read_metadata`); only its rows of ``split`` that the
            data root's metadata holds are kept (by ``site_id``), in its order.
        storage: see :func:`held_out_split`.

    Raises:
        ValueError: an unknown split, or no site left.
    """
    if split not in SPLIT_PARTS:
        raise ValueError(f"split must be one of {SPLIT_PARTS}, got {split!r}")
    root = Path(root).resolve()
    key = (*_metadata_key(root), split, labelled_only, storage)
    if table is None and key in _SITES_CACHE:
        return _SITES_CACHE[key]
    sites = root_sites(root, storage=storage)
    rows = sites.table
    in_part = part_mask(rows, split)
    if table is not None:
        wanted = table.loc[:, ["site_id"]]
        positions = wanted.merge(rows.reset_index()[["index", "site_id"]], on="site_id", how="inner")["index"]
        positions = positions.to_numpy()
        positions = positions[in_part[positions]]
    else:
        positions = np.flatnonzero(in_part)
    if labelled_only:
        positions = positions[rows["label"].to_numpy()[positions] >= 0]
    if len(positions) == 0:
        raise ValueError(f"{root}: no {'labelled ' if labelled_only else ''}sites in the {split} part")
    out = sites.subset(positions, augment=False)
    if table is None:
        while len(_SITES_CACHE) >= _SITES_CACHE_SIZE:
            _SITES_CACHE.pop(next(iter(_SITES_CACHE)))
        _SITES_CACHE[key] = out
    return out


__all__ = ["SPLIT_PARTS", "HeldOutSplit", "held_out_split", "part_mask", "root_sites", "split_sites",
           "validation_experiments"]
