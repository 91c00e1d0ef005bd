"""Shared fixtures: a tiny data set in the official RxRx1 layout, and the real RxRx1 pieces."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rxlib.config import shared_rxrx1_dir
from rxlib.io import write_png

TINY_SIZE = 16
# (experiment, plate, well, dataset, well_type, sirna_id)
TINY_WELLS = [
    ("HEPG2-01", 1, "B02", "train", "negative_control", 1138),
    ("HEPG2-01", 1, "B03", "train", "treatment", 0),
    ("HEPG2-01", 1, "B04", "train", "treatment", 1),
    ("HEPG2-01", 1, "C03", "train", "positive_control", 1108),
    ("U2OS-02", 1, "B02", "test", "negative_control", 1138),
    ("U2OS-02", 1, "B03", "test", "treatment", 0),
]


def write_tiny_official(root: Path, seed: int = 0) -> Path:
    """Write a 12-site data set in the official layout with random images; returns root."""
    rng = np.random.default_rng(seed)
    rows = []
    for experiment, plate, well, dataset, well_type, sirna_id in TINY_WELLS:
        for site in (1, 2):
            rows.append({
                "site_id": f"{experiment}_{plate}_{well}_{site}", "well_id": f"{experiment}_{plate}_{well}",
                "cell_type": experiment.split("-")[0], "dataset": dataset, "experiment": experiment,
                "plate": plate, "well": well, "site": site, "well_type": well_type,
                "sirna": "UNTREATED" if well_type == "negative_control" else f"s{sirna_id:05d}",
                "sirna_id": sirna_id,
            })
            for c in range(1, 7):
                image = rng.integers(0, 256, size=(TINY_SIZE, TINY_SIZE), dtype=np.uint8)
                write_png(root / "images" / experiment / f"Plate{plate}" / f"{well}_s{site}_w{c}.png", image)
    pd.DataFrame(rows).to_csv(root / "metadata.csv", index=False)
    return root


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    return write_tiny_official(tmp_path / "tiny")


@pytest.fixture(scope="session")
def real_rxrx1() -> Path:
    root = shared_rxrx1_dir()
    if not (root / "kaggle-2023" / "train.csv").is_file():
        pytest.skip(f"real RxRx1 pieces not found at {root} (set RXLIB_SHARED to their folder)")
    return root
