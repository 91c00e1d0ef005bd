"""A tiny synthetic RxRx1 for the multi-process training tests."""
from __future__ import annotations

from pathlib import Path

import pytest

TINY_SYNTH = {"image_size": 32, "n_treatments": 6, "n_junk": 1, "n_positive_controls": 1,
              "experiments": (("HEPG2", 1, 1), ("U2OS", 1, 1)), "n_plates": 1, "n_sites": 1, "calibration_sites": 2}


@pytest.fixture(scope="session")
def ddp_synth(tmp_path_factory) -> Path:
    from rxlib.synth import generate

    return generate(tmp_path_factory.mktemp("ddp_synth") / "data", profile="smoke", seed=0, progress=False,
                    **TINY_SYNTH)
