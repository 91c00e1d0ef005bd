"""Class ids in the RxRx1 1139-class convention, for every layout.

- Official RxRx1 release: ``sirna_id`` already is the class id.
- Kaggle 2019: ``sirna`` is the class id (0-1107 treatments, 1108-1137 positive controls, 1138
  the negative control).
- Kaggle 2023: ``sirna`` is a name (``sirna_250``, ``UNTREATED``) in an order unrelated to the
  class ids. The shipped table ``kaggle2023_labels.csv`` (derived by joining the two releases on
  ``id_code``; see ``scripts/derive_kaggle2023_labels.py``) maps each name to its class id.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..config import N_CLASSES_RXRX1, N_POSITIVE_CONTROLS_RXRX1, N_TREATMENTS_RXRX1
from ..io import RxRx1DataError

LABEL_TABLE_PATH = Path(__file__).with_name("kaggle2023_labels.csv")


def well_type_of_class(class_id: int, n_treatments: int = N_TREATMENTS_RXRX1,
                       n_positive: int = N_POSITIVE_CONTROLS_RXRX1) -> str:
    """``treatment``, ``positive_control`` or ``negative_control`` for a class id."""
    if class_id < 0 or class_id > n_treatments + n_positive:
        raise RxRx1DataError(f"class id {class_id} is outside 0..{n_treatments + n_positive}")
    if class_id < n_treatments:
        return "treatment"
    if class_id < n_treatments + n_positive:
        return "positive_control"
    return "negative_control"


def derive_kaggle2023_label_table(dir_2019: Path, dir_2023: Path) -> pd.DataFrame:
    """Join the two Kaggle releases on ``id_code`` and return ``sirna_2023 -> class_id``.

    Raises:
        RxRx1DataError: if a 2023 name maps to more than one class id or vice versa.
    """
    files = ("train.csv", "train_controls.csv", "test_controls.csv")
    old = pd.concat([pd.read_csv(Path(dir_2019) / f) for f in files], ignore_index=True)
    new = pd.concat([pd.read_csv(Path(dir_2023) / f) for f in files], ignore_index=True)
    joined = old.merge(new, on="id_code", suffixes=("_2019", "_2023"))
    pairs = joined[["sirna_2023", "sirna_2019"]].drop_duplicates()
    if pairs["sirna_2023"].duplicated().any() or pairs["sirna_2019"].duplicated().any():
        bad = pairs[pairs["sirna_2023"].duplicated(keep=False)]
        raise RxRx1DataError(f"the releases do not map one to one, e.g. {bad.head().to_dict('records')}")
    table = pairs.rename(columns={"sirna_2019": "class_id"}).astype({"class_id": int})
    return table.sort_values("class_id").reset_index(drop=True)


@lru_cache(maxsize=1)
def kaggle2023_label_map() -> dict[str, int]:
    """The shipped map from 2023 siRNA names to class ids (1139 entries)."""
    table = pd.read_csv(LABEL_TABLE_PATH)
    if len(table) != N_CLASSES_RXRX1:
        raise RxRx1DataError(f"{LABEL_TABLE_PATH}: expected {N_CLASSES_RXRX1} rows, found {len(table)}")
    return dict(zip(table["sirna_2023"], table["class_id"].astype(int)))
