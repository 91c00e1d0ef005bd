"""A torch Dataset over RxRx1 sites, real or synthetic."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..config import CELL_TYPES, N_CHANNELS
from ..io import RxRx1DataError
from .images import load_site_stem
from .metadata import read_metadata

if TYPE_CHECKING:
    from .cue import SpuriousCue
    from .store import SiteStore

NORMALISATIONS = ("none", "image", "experiment", "plate")
STORAGES = ("png", "store", "memory")


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

    Storage (the items are the same bit for bit whichever is chosen):

    - ``png``: decode the six PNGs of a site at every access (no preparation, slowest).
    - ``store``: read the decoded site from the site store (:mod:`rxlib.data.store`; prepared on first
      use, in ``workers`` processes); host memory holds only the items being read.
    - ``memory``: the store's sites of this data set read once into one uint8 array in RAM (small
      sets such as the smoke profile: 1,728 sites of 6x64x64 are 42 MB).

    Args:
        root: data root of any supported layout.
        table: a normalised metadata table (default: read from ``root``); rows are used as given.
        split, experiments, well_types, sites: filters on the table.
        labelled_only: drop rows whose label is unknown (-1).
        normalize: ``none`` (x / 255), ``image`` (each channel of each site to zero mean, unit
            variance), ``experiment`` or ``plate`` (per-channel mean and std of the group, from
            ``stats``, see :func:`rxlib.data.stats.normalisation_stats`).
        stats: the per-group statistics table for ``experiment``/``plate`` normalisation. With
            ``storage='store'`` or ``'memory'`` it defaults to the store's statistics of this data
            set's rows (:meth:`rxlib.data.store.SiteStore.stats`); ``png`` needs it given.
        augment: random horizontal/vertical flips and 90-degree rotations (torch's global RNG).
        expected_size: side length every image must have (None: any, channels equal).
        storage: ``png``, ``store`` or ``memory`` (above).
        store: the :class:`~rxlib.data.store.SiteStore` to read (it may hold more sites than this
            data set, e.g. the whole data root); default: prepared from this data set's rows.
        workers: decoding processes if the store has to be prepared (default: all cores).
        progress: a tqdm progress bar while the store is prepared (shown only then).

    Raises:
        ValueError: an unknown ``normalize`` or ``storage``, or group normalisation from PNGs without
            ``stats``.
        MissingImageError, CorruptImageError, ImageShapeError: (store/memory) a bad image while
            preparing the store, naming the file.
    """

    def __init__(self, root: str | Path, table: pd.DataFrame | None = None, *, split: str | None = None,
                 experiments: Sequence[str] | None = None, well_types: Sequence[str] | None = None,
                 sites: Sequence[int] = (1, 2), labelled_only: bool = False, normalize: str = "image",
                 stats: pd.DataFrame | None = None, augment: bool = False, expected_size: int | None = None,
                 storage: str = "png", store: SiteStore | None = None, workers: int | None = None,
                 progress: bool = True):
        if normalize not in NORMALISATIONS:
            raise ValueError(f"normalize={normalize!r}; expected one of {NORMALISATIONS}")
        if storage not in STORAGES:
            raise ValueError(f"storage={storage!r}; expected one of {STORAGES}")
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
        self.storage = storage
        self.store: SiteStore | None = None
        self._array: np.ndarray | None = None
        self._rows = np.arange(len(self.table), dtype=np.int64)
        if storage != "png" and len(self.table):
            if store is None:
                from .store import prepare_store

                store = prepare_store(self.root, self.table, workers=workers, expected_size=expected_size,
                                      progress=progress)
            self.store = store
            self._rows = store.rows(self.table["image_stem"])
            if storage == "memory":
                self._array = store.read_many(self._rows)
                self._rows = np.arange(len(self.table), dtype=np.int64)
        self._group_stats = None
        self.stats = None
        self.cue: SpuriousCue | None = None
        if normalize in ("experiment", "plate"):
            if stats is None and self.store is not None:
                stats = self.store.stats(normalize, self.store.rows(self.table["image_stem"]))
            if stats is None:
                raise ValueError(f"normalize={normalize!r} needs the per-{normalize} statistics table "
                                 "(rxlib.data.stats.normalisation_stats, or storage='store' for the store's)")
            self.stats = stats
            self._group_stats = _stats_lookup(stats, normalize, self.table)
        self._set_columns()

    def _set_columns(self) -> None:
        cell_index = {c: i for i, c in enumerate(CELL_TYPES)}
        self._cell = np.array([cell_index[c] for c in self.table["cell_type"]], dtype=np.int64)
        self._label = self.table["label"].to_numpy().astype(np.int64)
        self._stem = self.table["image_stem"].astype(str).to_numpy()
        if self.normalize == "experiment":
            self._group = self.table["experiment"].astype(str).to_numpy()
        elif self.normalize == "plate":
            self._group = (self.table["experiment"].astype(str) + "_" + self.table["plate"].astype(str)).to_numpy()
        else:
            self._group = None

    def __len__(self) -> int:
        return len(self.table)

    def group_key(self, row: pd.Series) -> str:
        return row["experiment"] if self.normalize == "experiment" else f"{row['experiment']}_{row['plate']}"

    def raw_image(self, index: int) -> np.ndarray:
        """The uint8 pixels (6, H, W) of item ``index``, as stored (not normalised, not augmented),
        with the :attr:`cue` drawn in where one is set."""
        if self._array is not None:
            raw = self._array[self._rows[index]]
        elif self.store is not None:
            raw = self.store.read(self._rows[index])
        else:
            raw = load_site_stem(self.root, self._stem[index], self.expected_size)
        return raw if self.cue is None else self.cue.apply(raw, int(self._label[index]))

    def with_cue(self, cue: SpuriousCue | None) -> RxRx1Dataset:
        """This data set with a spurious, label-tied cue drawn into every item (:mod:`rxlib.data.cue`;
        None removes it). Storage and statistics are shared; the statistics stay those of the clean sites."""
        out = copy.copy(self)
        out.cue = cue
        return out

    def with_shuffled_labels(self, seed: int = 0) -> RxRx1Dataset:
        """This data set with its labels permuted among its items (seeded): the same label counts, no tie
        between image and label. The label randomisation test of Adebayo et al. (2018) trains on it
        (:mod:`rxlib.explain.sanity`)."""
        out = copy.copy(self)
        out.table = self.table.copy()
        out.table["label"] = np.random.default_rng(seed).permutation(self.table["label"].to_numpy())
        out._set_columns()
        return out

    def raw_images(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """The uint8 pixels (len(positions), 6, H, W) of the items at ``positions``, for display."""
        positions = [int(p) for p in positions]
        if not positions:
            raise ValueError("no positions given")
        return np.stack([self.raw_image(p) for p in positions])

    def subset(self, positions: Sequence[int] | np.ndarray, *, augment: bool | None = None) -> RxRx1Dataset:
        """The items at ``positions`` as a data set sharing this one's storage and statistics.

        Args:
            positions: item indices, in the order wanted.
            augment: override :attr:`augment` (default: keep it).

        Raises:
            IndexError: a position outside ``0..len-1``.
        """
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"positions out of range 0..{len(self) - 1}: {positions[(positions < 0) | (positions >= len(self))][:5].tolist()}")
        out = copy.copy(self)
        out.table = self.table.iloc[positions].reset_index(drop=True)
        out._rows = self._rows[positions]
        out.augment = self.augment if augment is None else augment
        out._set_columns()
        return out

    def __getitem__(self, index: int) -> dict:
        raw = self.raw_image(index)
        image = torch.from_numpy(raw.astype(np.float32))
        if self.normalize == "none":
            image = image / 255.0
        elif self.normalize == "image":
            mean = image.mean(dim=(1, 2), keepdim=True)
            std = image.std(dim=(1, 2), keepdim=True)
            image = (image - mean) / (std + 1e-6)
        else:
            mean, std = self._group_stats[self._group[index]]
            image = (image - mean[:, None, None]) / (std[:, None, None] + 1e-6)
        if self.augment:
            image = random_dihedral(image)
        cell_type = torch.zeros(len(CELL_TYPES), dtype=torch.float32)
        cell_type[self._cell[index]] = 1.0
        return {"image": image.contiguous(), "cell_type": cell_type,
                "label": torch.tensor(int(self._label[index]), dtype=torch.int64), "index": index}


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
