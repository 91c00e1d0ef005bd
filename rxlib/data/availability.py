"""Which sites of a metadata table have their images on disk, and which to show.

A user's copy of RxRx1 may hold the metadata of every site but the images of only some: the real
pieces beside this project (180 PNGs of negative-control wells, no w5/w6 for site 2) or the Kaggle
2019 metadata with no images at all. The notebooks then show what exists and say so, instead of
failing on the first site they pick.

Existence is read by listing the image folders once (one ``os.scandir`` per plate folder), not by
six ``stat`` calls per metadata row, so a 125,000-site table is checked in seconds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import N_CHANNELS


def _plate_files(root: Path, folder: str) -> set[str]:
    try:
        with os.scandir(root / folder) as entries:
            return {entry.name for entry in entries if entry.is_file()}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def channels_present(root: str | Path, table: pd.DataFrame) -> pd.DataFrame:
    """A boolean frame (rows of ``table``, columns ``w1``..``w6``): whether each channel file exists."""
    root = Path(root)
    stems = table["image_stem"].astype(str)
    folders = stems.map(lambda s: s.rsplit("/", 1)[0] if "/" in s else "")
    listing = {folder: _plate_files(root, folder) for folder in folders.unique()}
    names = stems.map(lambda s: s.rsplit("/", 1)[-1])
    present = {
        f"w{c}": [f"{name}_w{c}.png" in listing[folder] for folder, name in zip(folders, names)]
        for c in range(1, N_CHANNELS + 1)
    }
    return pd.DataFrame(present, index=table.index)


def complete_sites(root: str | Path, table: pd.DataFrame) -> pd.Series:
    """Boolean mask of the rows of ``table`` whose six channel files all exist under ``root``."""
    if table.empty:
        return pd.Series([], dtype=bool, index=table.index)
    return channels_present(root, table).all(axis=1)


def imaged_sites(root: str | Path, table: pd.DataFrame) -> pd.Series:
    """Boolean mask of the rows of ``table`` with at least one channel file under ``root``."""
    if table.empty:
        return pd.Series([], dtype=bool, index=table.index)
    return channels_present(root, table).any(axis=1)


@dataclass(frozen=True)
class ExampleSite:
    """A site to show: its data root, its metadata row and why it was chosen."""

    root: Path
    row: pd.Series
    note: str

    @property
    def title(self) -> str:
        """``'<site_id> (<cell type>, class <label>)'``, for the figure."""
        return f"{self.row['site_id']} ({self.row['cell_type']}, class {self.row['label']})"


def example_site(root: str | Path, table: pd.DataFrame, *, fallback: tuple[Path, pd.DataFrame] | None = None,
                 split: str = "train", well_type: str = "treatment") -> ExampleSite:
    """The first site of ``split`` and ``well_type`` whose six channels exist, else any complete site,
    else the first complete site of ``fallback`` (another data root and its table, e.g. the real
    pieces; ``(root, None)`` or ``(None, None)`` when they are absent counts as no fallback);
    ``note`` says which.

    Raises:
        FileNotFoundError: no complete site under ``root`` nor ``fallback`` (names the folders).
    """
    root = Path(root)
    complete = complete_sites(root, table)
    preferred = complete & (table["split"] == split) & (table["well_type"] == well_type)
    if preferred.any():
        return ExampleSite(root, table[preferred].iloc[0], f"the first {well_type} site of the {split} split")
    if complete.any():
        row = table[complete].iloc[0]
        return ExampleSite(root, row, f"no {split} {well_type} site of {root} has all six channels; showing "
                                      f"{row['site_id']} ({row['well_type']}), the first site that does")
    tried = [str(root)]
    if fallback is not None and fallback[0] is not None and fallback[1] is not None:
        other_root, other_table = Path(fallback[0]), fallback[1]
        other = complete_sites(other_root, other_table)
        if other.any():
            row = other_table[other].iloc[0]
            return ExampleSite(other_root, row, f"{root} holds no site with all six channel images; showing "
                                                f"{row['site_id']} from {other_root} instead")
        tried.append(str(other_root))
    raise FileNotFoundError(f"no site with all six channel images under {' or '.join(tried)}")


def imaged_sample(root: str | Path, table: pd.DataFrame, max_sites: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_sites`` rows of ``table`` that have images, drawn evenly over experiments.

    Rows without any channel file are left out first, so that a copy holding the images of only a few
    sites still gives a sample of those (an empty frame when none has images).
    """
    from .stats import sample_sites

    if table.empty:
        return table
    # check a shuffled prefix first: on a complete copy this avoids listing every folder
    shuffled = table.sample(frac=1.0, random_state=seed)
    head = shuffled.iloc[: max(4 * max_sites, 1)]
    mask = imaged_sites(root, head)
    if mask.mean() > 0.9:
        pool = head[mask]
    else:
        pool = table[imaged_sites(root, table)]
    return sample_sites(pool.sort_index(), max_sites, seed)


@dataclass(frozen=True)
class IntensitySample:
    """The sites whose intensities Figure 3 shows: their data root, their rows and a note saying which."""

    root: Path
    sites: pd.DataFrame
    note: str


def intensity_sample(root: str | Path, table: pd.DataFrame, max_sites: int, seed: int = 0, *,
                     fallback: tuple[Path | None, pd.DataFrame | None] | None = None) -> IntensitySample:
    """At most ``max_sites`` sites with images of ``root`` (:func:`imaged_sample`), or, when ``root``
    holds no image, of ``fallback`` (another root and its table, e.g. the real pieces; ``None`` parts
    count as absent); ``note`` says where they come from.

    Raises:
        FileNotFoundError: neither root holds an image (names both).
    """
    root = Path(root)
    sites, note = imaged_sample(root, table, max_sites, seed), ""
    tried = str(root)
    if sites.empty and fallback is not None and fallback[0] is not None and fallback[1] is not None:
        other_root = Path(fallback[0])
        note = f"{root} holds no images: Figure 3 is drawn from the real pieces in {other_root}\n"
        root, sites = other_root, imaged_sample(other_root, fallback[1], max_sites, seed)
        tried += f" (nor {other_root})"
    if sites.empty:
        raise FileNotFoundError(f"no images under {tried}: Figure 3 needs image files")
    return IntensitySample(root, sites, f"{note}intensities of {len(sites)} sites with images, from {root}")


#: The real site shown beside Figure 1: negative control B02 of HEPG2-01, plate 1, site 1.
REAL_EXAMPLE_SITE = "HEPG2-01_1_B02_1"


@dataclass(frozen=True)
class RealExample:
    """The six channels of a real site (``stack`` None when the real pieces are absent), its title and a note."""

    stack: np.ndarray | None
    title: str
    note: str


def real_example(real_root: str | Path | None, real_table: pd.DataFrame | None,
                 site_id: str = REAL_EXAMPLE_SITE, *, expected_size: int = 512) -> RealExample:
    """Read the real site ``site_id`` shown beside Figure 1, or say that the real pieces are not there.

    Raises:
        KeyError: the real table has no such site.
    """
    from .images import load_site_stem

    if real_root is None or real_table is None:
        return RealExample(None, "", "real RxRx1 pieces not found: set real_root to their kaggle-2023 folder to "
                                     "see them here")
    rows = real_table[real_table["site_id"] == site_id]
    if rows.empty:
        raise KeyError(f"site {site_id} is not in the metadata of {real_root}")
    stack = load_site_stem(real_root, rows.iloc[0]["image_stem"], expected_size=expected_size)
    return RealExample(stack, f"real RxRx1: {site_id} ({rows.iloc[0]['well_type'].replace('_', ' ')})",
                       f"real RxRx1 site {site_id} from {real_root}")


def optional_metadata(root: str | Path | None) -> pd.DataFrame | None:
    """The metadata of ``root`` (:func:`rxlib.data.read_metadata`), or None when there is no root (the
    real pieces are optional)."""
    from .metadata import read_metadata

    return None if root is None else read_metadata(root)


def image_coverage(root: str | Path, table: pd.DataFrame) -> dict[str, int]:
    """How many sites of ``table`` have all six, some, or none of their channel files."""
    present = channels_present(root, table) if len(table) else pd.DataFrame(columns=[f"w{c}" for c in range(1, 7)])
    counts = present.sum(axis=1).to_numpy() if len(present) else np.zeros(0)
    return {"sites": int(len(table)), "complete": int((counts == N_CHANNELS).sum()),
            "partial": int(((counts > 0) & (counts < N_CHANNELS)).sum()), "none": int((counts == 0).sum())}




def check_trainable(root: str | Path, table: pd.DataFrame, *, min_classes: int = 2) -> None:
    """Stop, with one line saying what is needed, when ``root`` cannot train and validate a model.

    Training decodes every site of the data root once into the site store (:mod:`rxlib.data.store`),
    trains on the labelled training sites and validates on labelled held-out sites, so every site must
    have its six channel images, and the training sites must hold at least ``min_classes`` classes. The
    real pieces beside this project (180 images of negative-control wells) fail here: they are for the
    data-set figures of notebook 01.

    Raises:
        RxRx1DataError: names the data root, what it holds and what training needs.
    """
    from ..io import RxRx1DataError

    coverage = image_coverage(root, table)
    complete = complete_sites(root, table) if len(table) else pd.Series([], dtype=bool)
    train = table[(table["split"] == "train") & (table["label"] >= 0) & complete]
    classes = int(train["label"].nunique())
    if coverage["complete"] < len(table) or classes < min_classes:
        raise RxRx1DataError(
            f"{root} cannot train a model: {coverage['complete']} of its {len(table)} sites have all six channel "
            f"images, and the imaged labelled training sites cover {classes} class(es); training needs every site "
            f"imaged and at least {min_classes} classes (a complete copy of RxRx1, or the profile's synthetic set)")


__all__ = ["ExampleSite", "channels_present", "check_trainable", "complete_sites", "example_site", "image_coverage",
           "imaged_sample", "imaged_sites"]
