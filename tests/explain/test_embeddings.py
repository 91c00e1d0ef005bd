from __future__ import annotations

import numpy as np
import pytest

from rxlib.explain.embeddings import (
    feature_separation,
    figure10_weights,
    filter_band_block_stats,
    filter_stats_table,
    junk_classes,
    junk_separation,
    template_matrix,
    template_spread,
    tsne_frame,
)


def test_templates_of_both_heads(tiny_model):
    soft, arc = template_matrix(tiny_model, "softmax"), template_matrix(tiny_model, "arc")
    assert soft.shape == arc.shape == (10, 32)
    with pytest.raises(ValueError, match="head"):
        template_matrix(tiny_model, "both")


def test_spread_of_parallel_and_orthogonal_templates():
    assert template_spread(np.ones((4, 3)) * [[1], [2], [3], [4]]) == pytest.approx(0.0)
    assert template_spread(np.eye(5)) == pytest.approx(1.0)
    assert template_spread(np.vstack([np.eye(3), np.ones((2, 3))]), mask=[True, True, True, False, False]) == pytest.approx(1.0)


def test_junk_classes_and_their_separation():
    junk = junk_classes(6, [0, 1, 1, 2, 3])
    assert junk.tolist() == [False, False, False, False, True, True]
    templates = np.vstack([np.eye(4)[:, :4] + 0.1, [[-1, -1, -1, -1], [-1, -1, -1, -0.9]]])
    assert junk_separation(templates, junk) > 0.5
    with pytest.raises(ValueError, match="0..5"):
        junk_classes(6, [7])


def test_feature_separation_and_tsne():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 8)
    features = rng.normal(size=(24, 5)) * 0.1 + np.eye(5)[labels] * 5
    assert feature_separation(features, labels) > 0.8
    frame = tsne_frame(features, labels=labels, junk=labels == 2, perplexity=5)
    assert list(frame.columns) == ["x", "y", "label", "junk"] and len(frame) == 24
    with pytest.raises(ValueError, match="labels"):
        feature_separation(features, labels[:5])


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


def test_figure10_layers_of_the_tiny_densenet(tiny_model):
    weights = figure10_weights(tiny_model, ((1, 2), (2, 2)))
    assert set(weights) == {"DB(1),DL(2)", "DB(2),DL(2)"}
    assert len(filter_stats_table(tiny_model, ((1, 2), (2, 2)))) == 2
    with pytest.raises(ValueError, match="denseblock1"):
        figure10_weights(tiny_model)  # the tiny DenseNet has no DB(1),DL(6)
