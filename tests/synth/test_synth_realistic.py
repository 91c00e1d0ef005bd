"""The ``realistic`` profile: generates at 512x512, coverage varies by site, deterministic; and the
older profiles are drawn exactly as before it existed."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from rxlib.io import read_mask_png, read_png
from rxlib.segmentation import count_nuclei
from rxlib.synth import PROFILES, generate
from rxlib.synth.config import OPTIONAL_FIELDS, REAL_NUCLEI_PER_FIELD, SynthConfig

# One U2OS experiment, 1 treatment + 1 positive + 1 negative well, 2 sites: 6 sites of 512x512.
SMALL = {"n_treatments": 1, "experiments": (("U2OS", 1, 0),), "calibration_sites": 1}


@pytest.fixture(scope="module")
def realistic(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("realistic") / "set", profile="realistic", seed=0, progress=False, **SMALL)


def _coverage(root: Path) -> list[float]:
    return [float((read_mask_png(p) > 0).mean()) for p in sorted((root / "truth" / "masks").rglob("*_cells.png"))]


def test_realistic_profile_generates_real_sized_textured_sites(realistic):
    images = sorted((realistic / "images").rglob("*_w1.png"))
    assert len(images) == 6
    w1 = read_png(images[0])
    assert w1.shape == (512, 512)
    n = count_nuclei(w1)
    assert 0.5 * REAL_NUCLEI_PER_FIELD["U2OS"] < n < 1.6 * REAL_NUCLEI_PER_FIELD["U2OS"]
    # the background is not flat: camera noise and haze give it spread
    cells = read_mask_png(sorted((realistic / "truth" / "masks").rglob("*_cells.png"))[0])
    w2 = read_png(images[0].with_name(images[0].name.replace("_w1", "_w2")))
    assert w2[cells == 0].std() > 0.5


def test_realistic_coverage_varies_from_site_to_site(realistic):
    coverage = _coverage(realistic)
    assert max(coverage) - min(coverage) > 0.08, coverage
    assert max(coverage) < 0.97


def test_realistic_same_seed_same_images(tmp_path):
    small = {**SMALL, "image_size": 96, "n_sites": 1}
    a = generate(tmp_path / "a", profile="realistic", seed=3, progress=False, **small)
    b = generate(tmp_path / "b", profile="realistic", seed=3, progress=False, **small)
    files = sorted(p.relative_to(a) for p in (a / "images").rglob("*.png"))
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_realistic_phenotypes_are_subtler_than_smoke():
    real, smoke = PROFILES["realistic"], PROFILES["smoke"]
    assert real.treatment_strength[1] < smoke.treatment_strength[0]
    assert real.treatment_penetrance[1] <= smoke.treatment_penetrance[1]
    assert real.image_size == 512 and real.cell_scale == 1.0


def test_new_fields_left_out_of_old_profiles_params():
    for name in ("smoke", "cpu", "paper-mini", "rxrx1"):
        values = PROFILES[name].to_dict()
        assert not set(OPTIONAL_FIELDS) & set(values), name
        assert SynthConfig.from_dict(values) == PROFILES[name]
    values = PROFILES["realistic"].to_dict()
    assert values["texture"] > 0 and SynthConfig.from_dict(json.loads(json.dumps(values))) == PROFILES["realistic"]


# Pixels and masks of the tiny smoke set of tests/synth/test_synth_generate.py (seed 0), recorded with
# the code before the realistic profile existed (integ @ 747d215): the smoke profile, on which the
# notebooks' results rest, must be drawn exactly as before. Decoded arrays, not PNG bytes, so that
# another zlib gives the same hash.
SMOKE_TINY_PIXELS_SHA256 = "d33179d52421b6558d7cf79865e0926e3a28e781483fe9ea0c1861442ced3e9a"


def test_smoke_profile_pixels_unchanged(tmp_path):
    tiny = {"image_size": 32, "n_treatments": 6, "n_junk": 2, "n_positive_controls": 1,
            "experiments": (("HEPG2", 1, 1), ("U2OS", 1, 0)), "n_plates": 1, "treatment_replicates": 1,
            "negative_control_wells": 1, "calibration_sites": 2}
    root = generate(tmp_path / "tiny", profile="smoke", seed=0, progress=False, **tiny)
    digest = hashlib.sha256()
    for path in sorted((root / "images").rglob("*.png")):
        digest.update(read_png(path).tobytes())
    for path in sorted((root / "truth" / "masks").rglob("*.png")):
        digest.update(read_mask_png(path).tobytes())
    assert digest.hexdigest() == SMOKE_TINY_PIXELS_SHA256
    assert not set(OPTIONAL_FIELDS) & set(json.loads((root / "truth" / "params.json").read_text())["config"])


def test_spread_stain_takes_a_floor_off_or_fills_the_cells():
    from rxlib.synth.render import spread_stain

    signal = np.array([[0.0, 0.2, 1.0, 3.0]], np.float32)
    fill = np.array([[0.0, 1.0, 1.0, 1.0]], np.float32)
    assert np.array_equal(spread_stain(signal, fill, 0.0, 2.0), signal)
    assert np.allclose(spread_stain(signal, fill, -0.25, 2.0), [[0.0, 0.0, 0.5, 2.5]])  # floor 0.5: dim tails go
    assert np.allclose(spread_stain(signal, fill, 0.5, 2.0), [[0.0, 1.2, 2.0, 4.0]])  # cells filled by 1.0


def test_foreground_calibration_is_recorded_for_realistic_and_leaves_other_profiles_alone():
    import dataclasses

    from rxlib.synth.config import PROFILES, REAL_FOREGROUND
    from rxlib.synth.design import build_design
    from rxlib.synth.writer import REACHES, calibrate

    small = dataclasses.replace(PROFILES["realistic"], image_size=128, cell_scale=0.5, calibration_sites=1,
                                experiments=(("U2OS", 1, 0),))
    design = build_design(small, 0)
    with pytest.raises(ValueError, match="pass design"):
        calibrate(small, 0, design.classes)  # the fit images the design's own sites
    entry = calibrate(small, 0, design.classes, design)["U2OS"]
    assert entry["reach"][0] == 0.0  # w1: the nuclei keep their calibrated size and number
    assert all(r in REACHES for r in entry["reach"]) and all(level > 0 for level in entry["level"][1:])
    assert entry["target_foreground"] == list(REAL_FOREGROUND["U2OS"])
    smoke = PROFILES["smoke"]
    assert "reach" not in calibrate(smoke, 0, build_design(smoke, 0).classes)["HEPG2"]
    assert "fit_foreground" not in smoke.to_dict() and "density_scale" not in smoke.to_dict()  # old sets keep their identity
    with pytest.raises(ValueError, match="density_scale must be 4 values"):
        dataclasses.replace(smoke, density_scale=(1.0,)).validated()
