"""The explanation figures (rxlib/plotting/explain.py): they take arrays and return figures."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from rxlib.plotting.explain import (
    plot_cam_overlay,
    plot_channel_attention,
    plot_channel_overlays,
    plot_filter_heatmaps,
    plot_tsne,
)


@pytest.fixture
def image_and_cam():
    rng = np.random.default_rng(0)
    return rng.random((6, 16, 16)), torch.rand(16, 16)


def test_overlays_return_figures(image_and_cam):
    image, cam = image_and_cam
    before = image.copy()
    fig = plot_cam_overlay(image, cam, title="class 3")
    assert len(fig.axes) >= 3
    fig2 = plot_channel_overlays(image, cam, attention=np.linspace(0, 1, 6))
    assert len(fig2.axes) == 6 and "0.20" in fig2.axes[1].get_title()
    assert np.array_equal(image, before)
    plt.close("all")


def test_overlays_refuse_mismatched_shapes(image_and_cam):
    image, cam = image_and_cam
    with pytest.raises(ValueError, match="upsample"):
        plot_cam_overlay(image, cam[:8])
    with pytest.raises(ValueError, match="channel names"):
        plot_channel_overlays(image, cam, channel_names=["a"])


def test_other_figures():
    fig = plot_channel_attention({"printed": np.ones(6), "agreement": np.arange(6) / 5})
    assert fig.axes[0].get_legend() is not None
    fig = plot_filter_heatmaps({"DB(1),DL(6)": np.ones((8, 4))},
                               stats={"DB(1),DL(6)": {"band_fraction": 1.0, "duplicate_fraction": 1.0, "n_blocks": 1}})
    assert "bands 100%" in fig.axes[0].get_title()
    frame = pd.DataFrame({"x": [0, 1, 2], "y": [0, 1, 0], "junk": [False, True, False]})
    assert len(plot_tsne({"without PL": frame, "with PL": frame}).axes) == 2
    plt.close("all")
