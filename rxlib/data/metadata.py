"""Read RxRx1 metadata from any of the layouts users hold, into one normalised table.

Layouts:

- ``official``: the RxRx1 release from rxrx.ai: ``metadata.csv`` (``site_id, well_id, cell_type,
  dataset, experiment, plate, well, site, well_type, sirna, sirna_id``) and
  ``images/{experiment}/Plate{p}/{well}_s{site}_w{c}.png``. The synthetic RxRx1 uses this layout.
- ``kaggle-2019`` / ``kaggle-2023``: the Kaggle competition layout: ``train.csv``, ``test.csv``,
  ``train_controls.csv``, ``test_controls.csv`` (one row per well, both sites implied) and images
  under ``train/`` and ``test/``. 2019 labels are integers, 2023 labels strings (``sirna_250``,
  ``UNTREATED``); both become the same class ids (see :mod:`rxlib.data.labels`).

The normalised table has one row per imaging site:

============  ==============================================================
site_id       ``{experiment}_{plate}_{well}_{site}``
well_id       ``{experiment}_{plate}_{well}``
experiment    e.g. ``HEPG2-01``
plate         int, 1-4
well          e.g. ``B02``
site          int, 1 or 2
cell_type     one of :data:`rxlib.config.CELL_TYPES`
split         ``train`` or ``test``
well_type     ``treatment``, ``positive_control`` or ``negative_control``
label         class id in the 1139-class convention, -1 where unknown (Kaggle test treatments)
sirna         the siRNA name or number as the source wrote it
image_stem    path relative to the data root, without ``_w{c}.png``
============  ==============================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import CELL_TYPES, N_CLASSES_RXRX1, N_POSITIVE_CONTROLS_RXRX1, N_TREATMENTS_RXRX1
from ..io import RxRx1DataError
from .labels import kaggle2023_label_map, well_type_of_class

COLUMNS = ["site_id", "well_id", "experiment", "plate", "well", "site", "cell_type", "split",
           "well_type", "label", "sirna", "image_stem"]
OFFICIAL_COLUMNS = ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well",
                    "site", "well_type", "sirna", "sirna_id"]
WELL_TYPES = ("treatment", "positive_control", "negative_control")
KAGGLE_FILES = ("train.csv", "train_controls.csv", "test.csv", "test_controls.csv")
_WELL_RE = re.compile(r"^[A-P](0[1-9]|1[0-9]|2[0-4])$")


@dataclass(frozen=True)
class ClassScheme:
    """How many treatment and positive-control classes a data set's labels use."""

    n_treatments: int = N_TREATMENTS_RXRX1
    n_positive_controls: int = N_POSITIVE_CONTROLS_RXRX1

    @property
    def n_classes(self) -> int:
        return self.n_treatments + self.n_positive_controls + 1

    @property
    def negative_control(self) -> int:
        return self.n_classes - 1


def detect_layout(root: str | Path) -> str:
    """Return ``official``, ``kaggle-2019`` or ``kaggle-2023`` for a data root.

    Raises:
        RxRx1DataError: if the folder holds none of the known metadata files.
    """
    root = Path(root)
    if (root / "metadata.csv").is_file():
        return "official"
    present = [f for f in KAGGLE_FILES if (root / f).is_file()]
    if not present:
        raise RxRx1DataError(
            f"{root}: no RxRx1 metadata found (expected metadata.csv, or Kaggle's {', '.join(KAGGLE_FILES)})")
    labelled = [f for f in present if f != "test.csv"]
    if not labelled:
        return "kaggle-2023"  # only test.csv: no labels to tell the releases apart
    sirna = pd.read_csv(root / labelled[0], usecols=["sirna"], nrows=50)["sirna"]
    return "kaggle-2019" if pd.api.types.is_integer_dtype(sirna) else "kaggle-2023"


def class_scheme(root: str | Path) -> ClassScheme:
    """The class scheme of a data root: RxRx1's, or the synthetic set's from ``truth/classes.csv``."""
    classes = Path(root) / "truth" / "classes.csv"
    if classes.is_file():
        kinds = pd.read_csv(classes, usecols=["kind"])["kind"]
        return ClassScheme(int((kinds == "treatment").sum()), int((kinds == "positive_control").sum()))
    return ClassScheme()


def read_metadata(root: str | Path, layout: str | None = None) -> pd.DataFrame:
    """Read the metadata of a data root into the normalised per-site table (see module docstring).

    Raises:
        RxRx1DataError: naming the file and row of an unknown cell type, a bad well, plate or
            site, an unknown well type or label, or a duplicated site.
    """
    root = Path(root)
    layout = layout or detect_layout(root)
    if layout == "official":
        table = _read_official(root)
    elif layout in ("kaggle-2019", "kaggle-2023"):
        table = _read_kaggle(root, layout)
    else:
        raise RxRx1DataError(f"unknown layout {layout!r}; expected official, kaggle-2019 or kaggle-2023")
    dup = table["site_id"].duplicated(keep=False)
    if dup.any():
        raise RxRx1DataError(f"{root}: site(s) listed more than once: {sorted(set(table.loc[dup, 'site_id']))[:5]}")
    table = table[COLUMNS].reset_index(drop=True)
    table.attrs["layout"] = layout
    table.attrs["root"] = str(root)
    return table


def _fail(path: Path, frame: pd.DataFrame, mask: pd.Series, column: str, what: str) -> None:
    """Raise naming the first offending rows (1-based CSV line numbers, header = line 1)."""
    if not mask.any():
        return
    bad = frame.loc[mask]
    lines = [f"line {int(i) + 2}: {column}={bad.at[i, column]!r}" for i in bad.index[:5]]
    more = f" (and {int(mask.sum()) - 5} more)" if mask.sum() > 5 else ""
    raise RxRx1DataError(f"{path}: {what}: " + "; ".join(lines) + more)


def _check_common(path: Path, frame: pd.DataFrame) -> None:
    _fail(path, frame, ~frame["cell_type"].isin(CELL_TYPES), "cell_type",
          f"unknown cell type (known: {', '.join(CELL_TYPES)})")
    _fail(path, frame, ~frame["well"].astype(str).str.match(_WELL_RE), "well", "not a well of a 384-well plate")
    plate = pd.to_numeric(frame["plate"], errors="coerce")
    _fail(path, frame, plate.isna() | (plate < 1), "plate", "plate must be a positive integer")


def _read_official(root: Path) -> pd.DataFrame:
    path = root / "metadata.csv"
    frame = pd.read_csv(path, dtype={"well": str, "sirna": str})
    missing = [c for c in OFFICIAL_COLUMNS if c not in frame.columns]
    if missing:
        raise RxRx1DataError(f"{path}: missing column(s) {missing}; expected {OFFICIAL_COLUMNS}")
    _check_common(path, frame)
    _fail(path, frame, ~frame["site"].isin([1, 2]), "site", "site must be 1 or 2")
    _fail(path, frame, ~frame["dataset"].isin(["train", "test"]), "dataset", "dataset must be train or test")
    _fail(path, frame, ~frame["well_type"].isin(WELL_TYPES), "well_type", f"well type must be one of {WELL_TYPES}")
    scheme = class_scheme(root)
    label = pd.to_numeric(frame["sirna_id"], errors="coerce")
    _fail(path, frame, label.isna() | (label < 0) | (label >= scheme.n_classes), "sirna_id",
          f"class id outside 0..{scheme.n_classes - 1}")
    out = frame.rename(columns={"dataset": "split"}).copy()
    out["plate"] = out["plate"].astype(int)
    out["site"] = out["site"].astype(int)
    out["label"] = label.astype(int)
    out["image_stem"] = [f"images/{e}/Plate{p}/{w}_s{s}" for e, p, w, s in
                         zip(out["experiment"], out["plate"], out["well"], out["site"])]
    return out


def _read_kaggle(root: Path, layout: str) -> pd.DataFrame:
    label_map = kaggle2023_label_map() if layout == "kaggle-2023" else None
    parts = []
    for name in KAGGLE_FILES:
        path = root / name
        if not path.is_file():
            continue
        frame = pd.read_csv(path, dtype={"well": str})
        needed = ["id_code", "experiment", "plate", "well"] + ([] if name == "test.csv" else ["sirna"])
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise RxRx1DataError(f"{path}: missing column(s) {missing}")
        frame["cell_type"] = frame["experiment"].astype(str).str.split("-").str[0]
        _check_common(path, frame)
        split = "train" if name.startswith("train") else "test"
        if "sirna" not in frame.columns:
            frame["sirna"] = pd.NA
            frame["label"] = -1
        elif layout == "kaggle-2023":
            frame["label"] = frame["sirna"].map(label_map)
            _fail(path, frame, frame["label"].isna(), "sirna", "siRNA name not in the RxRx1 label table")
        else:
            frame["label"] = pd.to_numeric(frame["sirna"], errors="coerce")
            _fail(path, frame, frame["label"].isna() | (frame["label"] < 0) | (frame["label"] >= N_CLASSES_RXRX1),
                  "sirna", f"class id outside 0..{N_CLASSES_RXRX1 - 1}")
        frame["label"] = frame["label"].astype(int)
        if "well_type" in frame.columns:
            _fail(path, frame, ~frame["well_type"].isin(WELL_TYPES), "well_type",
                  f"well type must be one of {WELL_TYPES}")
        else:
            frame["well_type"] = "treatment"
        known = frame["label"] >= 0
        implied = frame.loc[known, "label"].map(well_type_of_class)
        _fail(path, frame.loc[known], implied != frame.loc[known, "well_type"], "well_type",
              "well type disagrees with the class id")
        frame["split"] = split
        frame["sirna"] = frame["sirna"].astype("string")
        parts.append(frame)
    wells = pd.concat(parts, ignore_index=True)
    wells["plate"] = wells["plate"].astype(int)
    wells["well_id"] = wells["experiment"] + "_" + wells["plate"].astype(str) + "_" + wells["well"]
    sites = wells.loc[wells.index.repeat(2)].copy()
    sites["site"] = [1, 2] * len(wells)
    sites["site_id"] = sites["well_id"] + "_" + sites["site"].astype(str)
    sites["image_stem"] = [f"{sp}/{e}/Plate{p}/{w}_s{s}" for sp, e, p, w, s in
                           zip(sites["split"], sites["experiment"], sites["plate"], sites["well"], sites["site"])]
    return sites
