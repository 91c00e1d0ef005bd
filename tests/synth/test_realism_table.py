"""rxlib.data.realism on tiny made-up real and synthetic folders (64x64 PNGs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rxlib.data import realism
from rxlib.io import write_png


def _disc_site(rng: np.random.Generator, n: int, radius: int, background: float, brightness: float) -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    image = np.full((64, 64), background)
    for y, x in rng.uniform(8, 56, (n, 2)):
        image[(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = brightness
    return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)


def _write(root: Path, layout: str, experiment: str, plate: int, site: int, rng, **kw) -> None:
    folder = (root / "train" if layout == "real" else root / "images") / experiment / f"Plate{plate}"
    for channel in (1, 2):
        write_png(folder / f"B02_s{site}_w{channel}.png", _disc_site(rng, **kw))


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("realism")
    rng = np.random.default_rng(0)
    for experiment, brightness in (("HUVEC-01", 120), ("HUVEC-02", 140)):   # two real batches
        for site in (1, 2):
            _write(base / "real", "real", experiment, 1, site, rng, n=4, radius=5, background=10,
                   brightness=brightness)
    for site in (1, 2):
        _write(base / "close", "synthetic", "HUVEC-01", 1, site, rng, n=4, radius=5, background=10, brightness=130)
        _write(base / "far", "synthetic", "HUVEC-01", 1, site, rng, n=12, radius=8, background=60, brightness=250)
    return base


def test_list_sites_reads_both_layouts(roots):
    real = realism.list_sites(roots / "real")
    assert len(real) == 4 and set(real["cell_type"]) == {"HUVEC"}
    assert set(realism.list_sites(roots / "close")["experiment"]) == {"HUVEC-01"}


def test_table_columns_and_pass_fail(roots):
    close = realism.realism_table(roots / "real", roots / "close", max_sites=None)
    far = realism.realism_table(roots / "real", roots / "far", max_sites=None)
    assert list(close.columns) == realism.TABLE_COLUMNS
    assert set(close["metric"]) == set(realism.METRICS)
    assert set(close["channel"]) == {"w1", "w2"}
    assert (close["passed"] == (close["distance"] <= close["threshold"])).all()
    intensity = lambda t: t[(t["metric"] == "intensity") & (t["channel"] == "w1")].iloc[0]  # noqa: E731
    assert intensity(close)["passed"] and not intensity(far)["passed"]
    assert not far.set_index(["metric", "channel"]).loc[("nucleus_area", "w1"), "passed"]


def test_thresholds_come_from_real_batches(roots):
    real = realism.measure_batches(roots / "real")
    limits = realism.realism_thresholds(roots / "real", real=real)
    batches = realism.batch_distances(real)
    merged = limits.merge(batches, on=["channel", "metric"])
    assert np.allclose(merged["threshold"], merged["real_batch_distance"])
    assert (merged["batches"] == "HUVEC-01 vs HUVEC-02").all()
    doubled = realism.realism_thresholds(roots / "real", real=real, factor=2.0)
    assert np.allclose(doubled["threshold"], 2 * limits["threshold"])


def test_identical_sets_are_at_distance_zero(roots):
    real = realism.measure(roots / "real")
    frame = realism.compare(real, real)
    assert np.allclose(frame["distance"], 0.0)


def test_glcm_contrast_rises_with_fine_texture():
    rng = np.random.default_rng(1)
    mask = np.ones((32, 32), bool)
    smooth = np.add.outer(np.arange(32), np.arange(32)).astype(float)
    assert realism.glcm_contrast(smooth, mask) < realism.glcm_contrast(rng.normal(size=(32, 32)), mask)
    assert np.isnan(realism.glcm_contrast(smooth, np.zeros((32, 32), bool)))


def test_missing_images_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="no site images"):
        realism.realism_table(tmp_path, tmp_path)


def test_main_prints_the_table(roots, capsys):
    realism.main([str(roots / "real"), str(roots / "close"), "--max-sites", "4"])
    out = capsys.readouterr().out
    assert "passed" in out and "nucleus_area" in out and "threshold" in out


def test_a_distance_is_the_same_statistic_as_its_threshold():
    """Synthetic vs real and real batch vs real batch are one statistic: Wasserstein over the pooled spread,
    symmetric, so a synthetic set shifted like a real batch gets that batch's distance."""
    from rxlib.data.realism import normalised_wasserstein

    rng = np.random.default_rng(0)
    tight, wide = rng.normal(10, 1, 5000), rng.normal(20, 4, 5000)
    assert normalised_wasserstein(tight, wide) == pytest.approx(normalised_wasserstein(wide, tight))
    assert normalised_wasserstein(tight, wide) > abs(wide.mean() - tight.mean()) / wide.std()
    assert normalised_wasserstein(tight, tight) == 0.0
    # the distance grows with the shift (a spread pooled over both samples would cap it near 2)
    base = rng.normal(0, 1, 5000)
    assert normalised_wasserstein(base, base + 100) == pytest.approx(100, rel=0.01)
    # and a synthetic side far too wide is far from a tight real one
    assert normalised_wasserstein(base, 10 * base) > 4
