"""CutMix: box area, lambda correction after clipping, label pairing, reproducibility, no in-place change."""
from __future__ import annotations

import math

import pytest
import torch

from rxlib.train import cutmix, sample_box, sample_lambda


def _batch(b=6, c=6, h=20, w=24):
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, c, h, w, generator=g) + torch.arange(b).view(b, 1, 1, 1) * 10, torch.arange(b) * 7


def test_box_size_without_clipping():
    # centre in the middle: the box is not clipped, its area is (1 - lam) W H up to rounding
    g = torch.Generator().manual_seed(0)
    h, w, lam = 100, 100, 0.75
    cut = int(100 * math.sqrt(1 - lam))
    for _ in range(50):
        y0, y1, x0, x1 = sample_box(h, w, lam, g)
        assert 0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w
        assert y1 - y0 <= cut and x1 - x0 <= cut
    y0, y1, x0, x1 = sample_box(h, w, 0.0, g)  # lam = 0: as big as the image, clipped
    assert (y1 - y0) >= h // 2 and (x1 - x0) >= w // 2


def test_mixing_pixels_labels_and_lambda():
    images, labels = _batch()
    before = images.clone(), labels.clone()
    g = torch.Generator().manual_seed(5)
    mixed, target, boxes = cutmix(images, labels, generator=g, return_boxes=True)
    torch.testing.assert_close(images, before[0], rtol=0, atol=0)  # no in-place change
    assert torch.equal(labels, before[1])
    b, _, h, w = images.shape
    assert torch.equal(target.y_a, labels)
    assert sorted(target.y_b.tolist()) == sorted(labels.tolist())
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        j = int(target.y_b[i]) // 7  # labels encode the index
        inside = torch.zeros(h, w, dtype=torch.bool)
        inside[y0:y1, x0:x1] = True
        assert torch.equal(mixed[i][:, inside], images[j][:, inside])
        assert torch.equal(mixed[i][:, ~inside], images[i][:, ~inside])
        area = (y1 - y0) * (x1 - x0)
        assert math.isclose(float(target.lam[i]), 1 - area / (h * w), rel_tol=1e-6)
    assert target.lam.dtype == torch.float32 and target.lam.shape == (b,)


def test_lambda_corrected_after_clipping():
    # On a 10x10 image a large box is almost always clipped; the corrected lam matches the pasted area.
    images, labels = torch.zeros(40, 1, 10, 10), torch.arange(40)
    mixed, target, boxes = cutmix(images, labels, generator=torch.Generator().manual_seed(1), return_boxes=True)
    areas = torch.tensor([(y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes], dtype=torch.float32)
    torch.testing.assert_close(target.lam, 1 - areas / 100)
    assert ((target.lam >= 0) & (target.lam <= 1)).all()


def test_seeded_and_reproducible():
    images, labels = _batch()
    a = cutmix(images, labels, generator=torch.Generator().manual_seed(9))
    b = cutmix(images, labels, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].lam, b[1].lam) and torch.equal(a[1].y_b, b[1].y_b)
    lams = [sample_lambda(1.0, torch.Generator().manual_seed(s)) for s in range(400)]
    mean = sum(lams) / len(lams)
    assert 0.45 < mean < 0.55  # Beta(1, 1) is uniform on [0, 1]


def test_bad_inputs():
    images, labels = _batch()
    with pytest.raises(ValueError, match="labels must have shape"):
        cutmix(images, labels[:2])
    with pytest.raises(ValueError, match="alpha"):
        sample_lambda(0.0)
