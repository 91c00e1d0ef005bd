import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from rxlib.data import read_metadata
from rxlib.data.stats import compare_class_sets, image_intensities, realism_summary, sample_sites
from rxlib.plotting import dataset as plots
from rxlib.plotting.composite import rgb_composite, stretch


def test_rgb_composite_shape_range_and_no_side_effect():
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 256, size=(6, 20, 24), dtype=np.uint8)
    before = stack.copy()
    rgb = rgb_composite(stack)
    assert rgb.shape == (20, 24, 3) and rgb.min() >= 0 and rgb.max() <= 1
    np.testing.assert_array_equal(stack, before)


def test_rgb_composite_of_one_channel_is_its_colour():
    stack = np.zeros((6, 4, 4), np.uint8)
    stack[0, 1, 1] = 255                                   # one bright Hoechst pixel
    rgb = rgb_composite(stack, channels=(0,))
    np.testing.assert_allclose(rgb[1, 1], [1.0, 0.0, 1.0], atol=1e-9)    # Hoechst has no green
    assert rgb[0, 0].sum() == 0


def test_stretch_constant_image_is_zero():
    assert stretch(np.full((3, 3), 7)).max() == 0


def test_rgb_composite_rejects_bad_shapes():
    with pytest.raises(ValueError, match="expected a"):
        rgb_composite(np.zeros((7, 4, 4)))


def test_dataset_figures_are_drawn(tiny_root):
    table = read_metadata(tiny_root)
    intensities, _ = image_intensities(tiny_root, table, progress=False, count_nuclei_w1=True)
    stack = np.stack([np.arange(64, dtype=np.uint8).reshape(8, 8)] * 6)
    figures = [
        plots.channel_panel(stack, "t"), plots.composite_panel(stack),
        plots.class_distribution(pd.Series([3, 3, 2], index=[0, 1, 2])),
        plots.channel_mean_distribution(intensities),
        plots.plate_layout(table, "HEPG2-01", 1),
        plots.realism_intensity(intensities, intensities), plots.realism_nuclei(intensities, intensities),
    ]
    assert all(len(f.axes) >= 1 for f in figures)
    layout_legend = [t.get_text() for t in figures[4].axes[0].get_legend().get_texts()]
    assert "treatment (2)" in layout_legend and "negative_control (1)" in layout_legend


def test_compare_class_sets_adds_totals():
    out = compare_class_sets({"paper": {29: 2, 33: 5}, "data": pd.DataFrame({"samples_per_class": [33], "n_classes": [4]})})
    assert out.set_index("samples_per_class").loc["total"].tolist() == [7, 4]


def test_realism_summary_ratio(tiny_root):
    table = read_metadata(tiny_root)
    intensities, _ = image_intensities(tiny_root, table, progress=False, count_nuclei_w1=True)
    summary = realism_summary(intensities, intensities)
    ratio = summary[summary["source"] == "synthetic / real"]
    assert set(ratio["cell_type"]) == {"HEPG2", "U2OS"}
    assert np.allclose(ratio.filter(like="mean").to_numpy(dtype=float), 1.0)


def test_sample_sites_is_even_over_experiments(tiny_root):
    table = read_metadata(tiny_root)
    sampled = sample_sites(table, 4, seed=0)
    assert sampled["experiment"].value_counts().to_dict() == {"HEPG2-01": 2, "U2OS-02": 2}
    assert sample_sites(table, 100).equals(table)


def test_site_panels_draw_both_views_or_none():
    stack = np.random.default_rng(0).integers(0, 255, (6, 16, 16), dtype=np.uint8)
    figures = plots.site_panels(stack, "a site")
    assert len(figures) == 2 and len(figures[0].axes) >= 6 and len(figures[1].axes) >= 1
    assert plots.site_panels(None, "absent") == []
    import matplotlib.pyplot as plt

    plt.close("all")
