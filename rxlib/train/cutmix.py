"""CutMix, section 3.4 (eqs. 8-9; Yun et al. 2019).

For every sample i a partner ``j = perm[i]`` is drawn (a random permutation of the batch), and
``lam_i ~ Beta(alpha, alpha)`` (alpha = 1 in the paper, i.e. uniform). A box of size
``W * sqrt(1 - lam) x H * sqrt(1 - lam)`` (rounded down to whole pixels) centred at
``r_x ~ U{0..W-1}``, ``r_y ~ U{0..H-1}`` is clipped to the image, and the box of image i is replaced
by the same box of image j (``M = 0`` inside the box in eq. 9). Because clipping shrinks the box,
``lam`` is then corrected to ``1 - box area / (W * H)``, the fraction of the image that still comes
from image i, so the mixed label ``lam * y_a + (1 - lam) * y_b`` matches the pixels.

Each sample gets its own lam and box (the reference implementation draws one per batch); the mixed
labels are returned as a :class:`~rxlib.train.losses.MixedTarget` that every loss accepts.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from rxlib.train.losses import MixedTarget


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(0, high, (1,), generator=generator))


def sample_lambda(alpha: float, generator: torch.Generator | None = None) -> float:
    """Draw ``lam ~ Beta(alpha, alpha)`` reproducibly from ``generator``.

    torch's Beta distribution cannot take a generator, so a numpy generator is seeded from one
    draw of ``generator``; the result is therefore a function of the generator's state only.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def sample_box(
    height: int, width: int, lam: float, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """Draw the CutMix box of eq. (8), clipped to the image.

    Args:
        height: image height H. width: image width W.
        lam: the mixing coefficient; the unclipped box covers ``1 - lam`` of the image.
        generator: source of randomness for the centre.

    Returns:
        ``(y0, y1, x0, x1)``: the box is ``[y0:y1, x0:x1]`` (possibly empty).
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = _randint(height, generator), _randint(width, generator)
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


def cutmix(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
    return_boxes: bool = False,
) -> tuple[torch.Tensor, MixedTarget] | tuple[torch.Tensor, MixedTarget, list[tuple[int, int, int, int]]]:
    """Mix a batch with CutMix; the inputs are not modified.

    Args:
        images: ``(B, C, H, W)``.
        labels: ``(B,)`` int64 labels.
        alpha: Beta parameter (1 in the paper).
        generator: a ``torch.Generator`` (CPU) for reproducible draws; None uses the global RNG.
        return_boxes: also return the box ``(y0, y1, x0, x1)`` of every sample.

    Returns:
        ``(mixed_images, MixedTarget(y_a, y_b, lam))`` where ``y_a = labels``, ``y_b = labels[perm]``
        and ``lam`` (float32, ``(B,)``, on the images' device) is the area-corrected share of ``y_a``;
        plus the boxes if asked for.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    batch, _, height, width = images.shape
    if labels.shape != (batch,):
        raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
    perm = torch.randperm(batch, generator=generator).to(images.device)
    mixed = images.clone()
    lams, boxes = [], []
    for i in range(batch):
        lam = sample_lambda(alpha, generator)
        y0, y1, x0, x1 = sample_box(height, width, lam, generator)
        mixed[i, :, y0:y1, x0:x1] = images[perm[i], :, y0:y1, x0:x1]
        lams.append(1.0 - (y1 - y0) * (x1 - x0) / (height * width))
        boxes.append((y0, y1, x0, x1))
    target = MixedTarget(
        labels, labels[perm.to(labels.device)], torch.tensor(lams, dtype=torch.float32, device=images.device)
    )
    if return_boxes:
        return mixed, target, boxes
    return mixed, target
