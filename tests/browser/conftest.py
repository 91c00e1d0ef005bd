"""A tiny synthetic RxRx1 (64x64, HEPG2 and U2OS, 22 sites) and a tiny seeded RxNet for the explorer tests.

64 x 64 keeps ``denseblock4`` of ``tiny_densenet`` at 2 x 2, so that CAMs still differ between classes.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

#: ``rxlib.synth.generate`` overrides of the explorer's data set (also used by the browser notebook).
EXPLORER_SYNTH = {"image_size": 64, "n_treatments": 4, "n_junk": 0, "n_positive_controls": 1,
                  "experiments": (("HEPG2", 1, 0), ("U2OS", 1, 0)), "n_plates": 1, "n_sites": 1,
                  "calibration_sites": 2}


@pytest.fixture(scope="session")
def explorer_root(tmp_path_factory) -> Path:
    from rxlib.synth import generate

    return generate(tmp_path_factory.mktemp("explorer") / "data", profile="smoke", seed=0, progress=False,
                    **EXPLORER_SYNTH)


@pytest.fixture(scope="module")
def explorer_dataset(explorer_root):
    from rxlib.data import RxRx1Dataset

    return RxRx1Dataset(explorer_root)


@pytest.fixture(scope="module")
def explorer_model(explorer_dataset):
    from rxlib.models import build_model

    torch.manual_seed(0)
    return build_model("tiny_densenet", int(explorer_dataset.table["label"].max()) + 1, embedding_dim=32)
