"""A tiny synthetic RxRx1 (32x32, two cell types, one train and one test experiment each) for the
training, registry and CLI tests, and an isolated model registry."""
from __future__ import annotations

from pathlib import Path

import pytest

TINY_SYNTH = {"image_size": 32, "n_treatments": 6, "n_junk": 1, "n_positive_controls": 1,
                  "experiments": (("HEPG2", 1, 1), ("U2OS", 1, 1)), "n_plates": 1, "n_sites": 1, "calibration_sites": 2}


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    from rxlib.synth import generate

    return generate(tmp_path_factory.mktemp("tiny_synth") / "data", profile="smoke", seed=0, progress=False,
                    **TINY_SYNTH)


@pytest.fixture
def registry_cache(tmp_path, monkeypatch) -> Path:
    """Point rxlib.config.cache_dir() (and so the model registry) at an empty folder."""
    monkeypatch.setenv("RXLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RXLIB_TRAIN_THREADS", "1")
    return tmp_path / "cache"


@pytest.fixture
def tiny_run() -> dict:
    """Overrides of the smoke profile for a run small enough for a test: 2 epochs of batch 8."""
    return {"epochs": 2, "batch_size": 8, "embedding_dim": 16, "pseudo_t1": 1, "pseudo_t2": 2}
