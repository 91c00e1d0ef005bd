"""A torch Dataset over RxRx1 sites, real or synthetic."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..config import CELL_TYPES, N_CHANNELS
from ..io import RxRx1DataError
from .images import load_site_stem
from .metadata import read_metadata

NORMALISATIONS = ("none", "image", "experiment", "plate")


class RxRx1Dataset(Dataset):
    """RxRx1 imaging sites as tensors for training and explanation.

    Data card:

    - **Images**: 6 channels, 512x512 (synthetic: the profile's size), 8-bit, one PNG per channel.
      w1 Hoechst (nuclei), w2 ConA (endoplasmic reticulum), w3 Phalloidin (actin),
      w4 Syto14 (nucleoli, cytoplasmic RNA), w5 MitoTracker (mitochondria), w6 WGA (Golgi,
      plasma membrane).
    - **Labels**: 1139-class convention: 0-1107 siRNA treatments, 1108-1137 positive controls,
      1138 the negative control (untreated); -1 where unknown (Kaggle test treatments). A synthetic
      set uses the same order with fewer classes (``truth/classes.csv``).
    - **Cell types**: HEPG2, HUVEC, RPE, U2OS, given as a one-hot of 4 in that order.
    - **Splits**: 51 experiments (HEPG2 11, HUVEC 24, RPE 11, U2OS 5), 33 train and 18 test, none
      shared; 4 plates each, 308 inner wells imaged at 2 sites; one negative control per plate.
    - **Citation**: Sypetkowski et al., "RxRx1: A Dataset for Evaluating Experimental Batch
      Correction Methods", CVPR Workshops 2023; Kaggle "Recursion Cellular Image Classification" 2019.

    Items are dicts: ``image`` float32 (6, H, W), ``cell_type`` float32 one-hot (4,), ``label``
    int64, ``index`` int (row of :attr:`table`).

    Args:
        root: data root of any supported layout.
        table: a normalised metadata table (default: read from ``root``); rows are used as given.
        split, experiments, well_types, sites: filters on the table.
        labelled_only: drop rows whose label is unknown (-1).
        normalize: ``none`` (x / 255), ``image`` (each channel of each site to zero mean, unit
            variance), ``experiment`` or ``plate`` (per-channel mean and std of the group, from
            ``stats``, see :func:`rxlib.data.stats.normalisation_stats`).
        stats: the per-group statistics table for ``experiment``/``plate`` normalisation.
        augment: random horizontal/vertical flips and 90-degree rotations (torch's global RNG).
        expected_size: side length every image must have (None: any, channels equal).
        cache: decode each site's PNGs once into a memory-mapped uint8 file and read it from there
            (:class:`rxlib.data.cache.SiteCache`): False (default) reads the PNGs every time; True
            uses the default cache folder; a path uses that folder. Built on first use (all sites
            of the table), rebuilt when the images or the metadata change.
    """

    def __init__(self, root: str | Path, table: pd.DataFrame | None = None, *, split: str | None = None,
                 experiments: Sequence[str] | None = None, well_types: Sequence[str] | None = None,
                 sites: Sequence[int] = (1, 2), labelled_only: bool = False, normalize: str = "image",
                 stats: pd.DataFrame | None = None, augment: bool = False, expected_size: int | None = None,
                 cache: bool | str | Path = False):
        if normalize not in NORMALISATIONS:
            raise ValueError(f"normalize={normalize!r}; expected one of {NORMALISATIONS}")
        self.root = Path(root)
        table = read_metadata(self.root) if table is None else table
        mask = table["site"].isin(list(sites))
        if split is not None:
            mask &= table["split"] == split
        if experiments is not None:
            mask &= table["experiment"].isin(list(experiments))
        if well_types is not None:
            mask &= table["well_type"].isin(list(well_types))
        if labelled_only:
            mask &= table["label"] >= 0
        self.table = table.loc[mask].reset_index(drop=True)
        self.normalize = normalize
        self.augment = augment
        self.expected_size = expected_size
        self._group_stats = None
        if normalize in ("experiment", "plate"):
            if stats is None:
                raise ValueError(f"normalize={normalize!r} needs the per-{normalize} statistics table "
                                 "(rxlib.data.stats.normalisation_stats)")
            self._group_stats = _stats_lookup(stats, normalize, self.table)
        self._cell_index = {c: i for i, c in enumerate(CELL_TYPES)}
        self.cache = None
        if cache is not False and cache is not None and len(self.table):
            from .cache import SiteCache

            self.cache = SiteCache.build(self.root, self.table["image_stem"], expected_size=expected_size,
                                         folder=None if cache is True else Path(cache))

    def __len__(self) -> int:
        return len(self.table)

    def group_key(self, row: pd.Series) -> str:
        return row["experiment"] if self.normalize == "experiment" else f"{row['experiment']}_{row['plate']}"

    def __getitem__(self, index: int) -> dict:
        row = self.table.iloc[index]
        if self.cache is not None:
            raw = self.cache[index]
        else:
            raw = load_site_stem(self.root, row["image_stem"], self.expected_size)
        image = torch.from_numpy(raw.astype(np.float32))
        if self.normalize == "none":
            image = image / 255.0
        elif self.normalize == "image":
            mean = image.mean(dim=(1, 2), keepdim=True)
            std = image.std(dim=(1, 2), keepdim=True)
            image = (image - mean) / (std + 1e-6)
        else:
            mean, std = self._group_stats[self.group_key(row)]
            image = (image - mean[:, None, None]) / (std[:, None, None] + 1e-6)
        if self.augment:
            image = random_dihedral(image)
        cell_type = torch.zeros(len(CELL_TYPES), dtype=torch.float32)
        cell_type[self._cell_index[row["cell_type"]]] = 1.0
        return {"image": image.contiguous(), "cell_type": cell_type,
                "label": torch.tensor(int(row["label"]), dtype=torch.int64), "index": index}


def random_dihedral(image: torch.Tensor) -> torch.Tensor:
    """One of the 8 flips/90-degree rotations of a (C, H, W) tensor, drawn from torch's RNG."""
    k = int(torch.randint(0, 4, (1,)))
    if k:
        image = torch.rot90(image, k, dims=(1, 2))
    if int(torch.randint(0, 2, (1,))):
        image = torch.flip(image, dims=(2,))
    return image


def _stats_lookup(stats: pd.DataFrame, by: str, table: pd.DataFrame) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    if "group" not in stats.columns or stats.attrs.get("by", by) != by:
        raise ValueError(f"statistics table is not per {by}")
    lookup = {}
    for group, frame in stats.groupby("group"):
        frame = frame.sort_values("channel")
        if len(frame) != N_CHANNELS:
            raise RxRx1DataError(f"statistics for {by} {group} cover {len(frame)} channels, not {N_CHANNELS}")
        lookup[str(group)] = (torch.tensor(frame["mean"].to_numpy(), dtype=torch.float32),
                              torch.tensor(frame["std"].to_numpy(), dtype=torch.float32))
    keys = table["experiment"] if by == "experiment" else table["experiment"] + "_" + table["plate"].astype(str)
    absent = sorted(set(keys) - set(lookup))
    if absent:
        raise RxRx1DataError(f"no {by} statistics for {absent[:5]}")
    return lookup
