"""Figure 10's 1x1 filters: the band and block measure on hand-made weights, and the layers of a tiny DenseNet."""
from __future__ import annotations

import numpy as np
import pytest

from rxlib.explain.filters import (
    figure10_weights,
    filter_band_block_stats,
    filter_stats_table,
    filter_unit_flags,
)


def test_band_and_block_measure_on_hand_made_weights():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(10, 6))
    w[2:5] = 0.7  # a block of three identical bands
    w[8] = -1.3  # another band, pointing the other way
    w[9] = 2 * w[0]  # a scaled copy of filter 0, not adjacent
    stats = filter_band_block_stats(w)
    assert stats["band_fraction"] == pytest.approx(4 / 10)
    assert stats["n_duplicate_filters"] == 5 and stats["n_duplicate_groups"] == 2
    assert stats["largest_group"] == 3 and stats["n_blocks"] == 1
    assert stats["redundant_fraction"] == pytest.approx(3 / 10)
    clean = filter_band_block_stats(np.eye(6))
    assert clean["band_fraction"] == 0 and clean["n_duplicate_filters"] == 0 and clean["n_blocks"] == 0
    with pytest.raises(ValueError, match="matrix"):
        filter_band_block_stats(np.ones(5))


def test_unit_flags_are_the_stats_per_filter():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(12, 6))
    w[3:6] = 0.4  # three identical bands
    w[11] = -3 * w[0]  # not a duplicate: the cosine is -1
    flags, stats = filter_unit_flags(w), filter_band_block_stats(w)
    assert flags["band"].tolist() == [0.0] * 3 + [1.0] * 3 + [0.0] * 6
    assert flags["band"].mean() == stats["band_fraction"]
    assert flags["has_duplicate"].mean() == stats["duplicate_fraction"] == pytest.approx(3 / 12)
    # the convolution's own (out, in, 1, 1) shape is accepted
    assert filter_unit_flags(w[:, :, None, None]).equals(flags)


def test_figure10_layers_of_the_tiny_densenet(tiny_model):
    weights = figure10_weights(tiny_model, ((1, 2), (2, 2)))
    assert set(weights) == {"DB(1),DL(2)", "DB(2),DL(2)"}
    assert len(filter_stats_table(tiny_model, ((1, 2), (2, 2)))) == 2
    with pytest.raises(ValueError, match="denseblock1"):
        figure10_weights(tiny_model)  # the tiny DenseNet has no DB(1),DL(6)
