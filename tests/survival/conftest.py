"""Fixtures of the kill-and-restart tests: a tiny synthetic RxRx1 and a seeded random source of kill
points (the seed is printed so that a failure can be replayed); helpers are in killing.py."""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

TINY_SYNTH = {"image_size": 32, "n_treatments": 6, "n_junk": 1, "n_positive_controls": 1,
              "experiments": (("HEPG2", 1, 1), ("U2OS", 1, 1)), "n_plates": 1, "n_sites": 1, "calibration_sites": 2}


@pytest.fixture(scope="session")
def survival_synth(tmp_path_factory) -> Path:
    from rxlib.synth import generate

    return generate(tmp_path_factory.mktemp("survival_synth") / "data", profile="smoke", seed=0, progress=False,
                    **TINY_SYNTH)


@pytest.fixture
def kill_rng() -> random.Random:
    """Random kill points; ``RXLIB_KILL_SEED`` replays a run (the seed is printed)."""
    seed = int(os.environ.get("RXLIB_KILL_SEED", random.SystemRandom().randrange(1 << 30)))
    print(f"kill seed: RXLIB_KILL_SEED={seed}")
    return random.Random(seed)
