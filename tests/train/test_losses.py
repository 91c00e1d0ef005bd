"""Each loss against its formula written out directly (eqs. 3, 6, 12), with hard and CutMix targets."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rxlib.train import (
    MixedTarget,
    arc_margin_loss,
    arc_margin_target_cosine,
    composite_loss,
    head_loss,
    softmax_cross_entropy,
)


@pytest.fixture
def small():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g) * 3
    cosine = torch.rand(5, 4, generator=g) * 2 - 1
    labels = torch.tensor([0, 3, 1, 1, 2])
    return logits, cosine, labels


def direct_softmax(logits, labels):
    z = logits.double().numpy()
    out = []
    for i, y in enumerate(labels.tolist()):
        out.append(-math.log(math.exp(z[i, y]) / np.exp(z[i]).sum()))
    return np.array(out)


def direct_arc(cosine, labels, s=30.0, m=0.5):
    c = cosine.double().numpy()
    out = []
    for i, y in enumerate(labels.tolist()):
        theta = math.acos(c[i, y])
        target = math.cos(theta + m) if theta + m <= math.pi else c[i, y] - m * math.sin(m)
        others = sum(math.exp(s * c[i, j]) for j in range(c.shape[1]) if j != y)
        out.append(-math.log(math.exp(s * target) / (math.exp(s * target) + others)))
    return np.array(out)


def test_softmax_matches_eq3(small):
    logits, _, labels = small
    per = softmax_cross_entropy(logits, labels, reduction="none")
    np.testing.assert_allclose(per.numpy(), direct_softmax(logits, labels), rtol=1e-5)
    np.testing.assert_allclose(float(softmax_cross_entropy(logits, labels)), direct_softmax(logits, labels).mean(), rtol=1e-5)


def test_arc_margin_matches_eq6(small):
    _, cosine, labels = small
    per = arc_margin_loss(cosine, labels, reduction="none")
    np.testing.assert_allclose(per.numpy(), direct_arc(cosine, labels), rtol=1e-4, atol=1e-4)


def test_arc_margin_fallback_where_theta_plus_m_exceeds_pi():
    m = 0.5
    cos = torch.tensor([math.cos(math.pi - 0.1), -1.0, math.cos(1.0), 1.0])
    got = arc_margin_target_cosine(cos, m)
    expected = [float(cos[0]) - m * math.sin(m), -1.0 - m * math.sin(m), math.cos(1.5), math.cos(0.5)]
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-4)
    # decreasing in theta across the switch at theta = pi - m (it steps down to -cos(m) - m sin(m))
    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    values = arc_margin_target_cosine(torch.cos(theta).float(), m)
    assert (values[1:] <= values[:-1] + 1e-6).all()
    edge = torch.tensor([math.cos(math.pi - m) + 1e-6, math.cos(math.pi - m) - 1e-6])
    a, b = arc_margin_target_cosine(edge, m).tolist()
    assert a == pytest.approx(-1.0, abs=1e-3) and b == pytest.approx(-math.cos(m) - m * math.sin(m), abs=1e-3)


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_arc_margin_gradient_finite_at_extremes(value):
    cosine = torch.full((3, 4), value, requires_grad=True)
    loss = arc_margin_loss(cosine, torch.tensor([0, 1, 3]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(cosine.grad).all()


def test_composite_is_weighted_sum(small):
    logits, cosine, labels = small
    got = composite_loss(logits, cosine, labels)
    expected = 0.2 * arc_margin_loss(cosine, labels) + 0.8 * softmax_cross_entropy(logits, labels)
    torch.testing.assert_close(got, expected)
    out = {"logits": logits, "cosine": cosine}
    torch.testing.assert_close(head_loss(out, labels, "composite"), expected)
    torch.testing.assert_close(head_loss(out, labels, "softmax"), softmax_cross_entropy(logits, labels))
    torch.testing.assert_close(head_loss(out, labels, "arc"), arc_margin_loss(cosine, labels))
    with pytest.raises(ValueError, match="'cosface'"):
        head_loss(out, labels, "cosface")


def test_mixed_targets(small):
    logits, cosine, labels = small
    y_b = torch.tensor([2, 2, 0, 1, 3])
    lam = torch.tensor([1.0, 0.0, 0.3, 0.5, 0.9])
    target = MixedTarget(labels, y_b, lam)
    soft = softmax_cross_entropy(logits, target, reduction="none")
    lam64 = lam.double().numpy()
    np.testing.assert_allclose(
        soft.numpy(), lam64 * direct_softmax(logits, labels) + (1 - lam64) * direct_softmax(logits, y_b), rtol=1e-5
    )
    # equals cross-entropy against the soft label of eq. (9)
    soft_label = lam[:, None] * torch.eye(4)[labels] + (1 - lam[:, None]) * torch.eye(4)[y_b]
    torch.testing.assert_close(soft, -(soft_label * logits.log_softmax(1)).sum(1))
    arc = arc_margin_loss(cosine, target, reduction="none")
    np.testing.assert_allclose(
        arc.numpy(), lam64 * direct_arc(cosine, labels) + (1 - lam64) * direct_arc(cosine, y_b), rtol=1e-4, atol=1e-4
    )
    # scalar lam broadcasts
    torch.testing.assert_close(
        softmax_cross_entropy(logits, MixedTarget(labels, y_b, torch.tensor(1.0))), softmax_cross_entropy(logits, labels)
    )


def test_per_sample_weight_divides_by_batch_size(small):
    logits, cosine, labels = small
    w = torch.tensor([1.0, 1.0, 0.0, 0.5, 2.0])
    per = composite_loss(logits, cosine, labels, reduction="none")
    torch.testing.assert_close(composite_loss(logits, cosine, labels, weight=w), (per * w).sum() / 5)
    torch.testing.assert_close(composite_loss(logits, cosine, labels, weight=w, reduction="sum"), (per * w).sum())


def test_bad_labels_are_named(small):
    logits, cosine, labels = small
    with pytest.raises(ValueError, match=r"\[0, 4\).*-1"):
        softmax_cross_entropy(logits, torch.tensor([0, -1, 1, 1, 2]))
    with pytest.raises(ValueError, match="shape"):
        arc_margin_loss(cosine, labels[:3])
    with pytest.raises(ValueError, match="weight"):
        softmax_cross_entropy(logits, labels, weight=torch.ones(3))
