from __future__ import annotations

import numpy as np
import pytest

from rxlib.explain.embeddings import (
    feature_separation,
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
