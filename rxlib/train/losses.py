"""The losses of section 3.2 and 4.3: softmax cross-entropy (eq. 3), arc-margin (eq. 6), composite (eq. 12).

Targets are either hard labels, a ``(B,)`` int64 tensor, or a :class:`MixedTarget` from CutMix
(``y_a``, ``y_b``, ``lam`` per sample). A mixed target gives the per-sample loss
``lam * loss(y_a) + (1 - lam) * loss(y_b)``, which for cross-entropy equals the cross-entropy
against the mixed label ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)`` of eq. (9). For the
arc-margin loss the margin is applied at ``y_a`` in the first term and at ``y_b`` in the second, so
both heads learn from the mixed labels.

Every loss takes an optional per-sample ``weight`` (for pseudo-labels, eq. 7). With
``reduction='mean'`` the weighted losses are summed and divided by the batch size N, not by the sum
of the weights, so that a weight of ``alpha`` scales a sample's contribution exactly as ``alpha(t)``
does in eq. (7) and a weight of 0 removes it.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

#: The paper's hyper-parameters (section 4.3).
ARC_SCALE = 30.0
ARC_MARGIN = 0.5
COMPOSITE_C = 0.2


class MixedTarget(NamedTuple):
    """Labels of a CutMix batch: sample i is ``lam[i]`` of class ``y_a[i]`` and ``1 - lam[i]`` of ``y_b[i]``."""

    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: torch.Tensor


Target = torch.Tensor | MixedTarget


def _check_labels(labels: torch.Tensor, n_classes: int, batch: int, what: str = "labels") -> None:
    if labels.shape != (batch,):
        raise ValueError(f"{what} must have shape ({batch},), got {tuple(labels.shape)}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{what} must be an integer tensor, got {labels.dtype}")
    if batch and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)]
        raise ValueError(
            f"{what} must lie in [0, {n_classes}); got {bad[:5].tolist()} (unknown labels such as -1 must be "
            f"dropped or pseudo-labelled before the loss)"
        )


def _reduce(per_sample: torch.Tensor, weight: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if weight is not None:
        weight = torch.as_tensor(weight, dtype=per_sample.dtype, device=per_sample.device)
        if weight.shape != per_sample.shape:
            raise ValueError(f"weight must have shape {tuple(per_sample.shape)}, got {tuple(weight.shape)}")
        per_sample = per_sample * weight
    if reduction == "none":
        return per_sample
    if reduction == "sum":
        return per_sample.sum()
    if reduction == "mean":
        return per_sample.sum() / max(per_sample.shape[0], 1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _mixed(per_label, scores: torch.Tensor, target: Target) -> torch.Tensor:
    """Per-sample loss for hard or mixed targets; ``per_label(labels)`` gives the hard-label loss."""
    n, k = scores.shape
    if isinstance(target, MixedTarget):
        _check_labels(target.y_a, k, n, "y_a")
        _check_labels(target.y_b, k, n, "y_b")
        lam = torch.as_tensor(target.lam, dtype=scores.dtype, device=scores.device)
        lam = lam.expand(n) if lam.ndim == 0 else lam
        if lam.shape != (n,):
            raise ValueError(f"lam must be a scalar or have shape ({n},), got {tuple(lam.shape)}")
        return lam * per_label(target.y_a) + (1 - lam) * per_label(target.y_b)
    _check_labels(target, k, n)
    return per_label(target)


def softmax_cross_entropy(
    logits: torch.Tensor, target: Target, weight: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Softmax loss, eq. (3): ``-log softmax(W x + b)[y]``.

    Args:
        logits: ``(N, K)`` scores ``W x + b`` of the softmax head.
        target: hard labels ``(N,)`` or a :class:`MixedTarget`.
        weight: optional per-sample weights ``(N,)``.
        reduction: ``'mean'`` (sum / N), ``'sum'`` or ``'none'``.
    """
    log_p = F.log_softmax(logits.float(), dim=1)

    def per_label(labels: torch.Tensor) -> torch.Tensor:
        return -log_p.gather(1, labels.long().unsqueeze(1)).squeeze(1)

    return _reduce(_mixed(per_label, logits, target), weight, reduction)


def arc_margin_target_cosine(cosine: torch.Tensor, m: float = ARC_MARGIN) -> torch.Tensor:
    """``cos(theta + m)`` for every entry of ``cosine = cos(theta)``, made safe where ``theta + m > pi``.

    This is the standard ArcFace fallback (insightface; Deng et al. 2019): where
    ``cos(theta) <= cos(pi - m)``, i.e. ``theta + m >= pi``, cos(theta + m) would start to increase
    again with theta (the penalty would turn into a reward), so ``cos(theta) - m * sin(m)`` is used
    instead, which keeps the target logit decreasing in theta everywhere (it is not continuous: at
    ``theta = pi - m`` it steps down from -1 to ``-cos(m) - m sin(m)``, about -1.117 for m = 0.5,
    which only ever adds penalty). This is the variant of the insightface / ArcFace reference code,
    chosen over clamping ``theta + m`` at pi because the clamp gives a zero gradient to the worst
    samples.
    ``sin(theta)`` is computed as ``sqrt(clamp(1 - cos^2, min=1e-7))`` so that the gradient stays
    finite at ``cos = +-1``.
    """
    cosine = cosine.float().clamp(-1.0, 1.0)
    sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=1e-7))
    phi = cosine * math.cos(m) - sine * math.sin(m)
    threshold = math.cos(math.pi - m)
    return torch.where(cosine > threshold, phi, cosine - m * math.sin(m))


def arc_margin_logits(
    cosine: torch.Tensor, labels: torch.Tensor, s: float = ARC_SCALE, m: float = ARC_MARGIN
) -> torch.Tensor:
    """The logits of eq. (6): ``s * cos(theta_j)``, with ``s * cos(theta_y + m)`` in the label column."""
    cosine = cosine.float().clamp(-1.0, 1.0)
    target_cos = arc_margin_target_cosine(cosine, m)
    onehot = F.one_hot(labels.long(), cosine.shape[1]).to(torch.bool)
    return s * torch.where(onehot, target_cos, cosine)


def arc_margin_loss(
    cosine: torch.Tensor,
    target: Target,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    s: float = ARC_SCALE,
    m: float = ARC_MARGIN,
) -> torch.Tensor:
    """Additive angular margin loss, eq. (6) (ArcFace), with the safe fallback of :func:`arc_margin_target_cosine`.

    Args:
        cosine: ``(N, K)`` cosines between normalised embeddings and normalised arc templates.
        target: hard labels ``(N,)`` or a :class:`MixedTarget` (margin at y_a and at y_b, weighted by lam).
        weight: optional per-sample weights ``(N,)``.
        reduction: ``'mean'`` (sum / N), ``'sum'`` or ``'none'``.
        s: scale (30 in the paper). m: angular margin in radians (0.5 in the paper).
    """

    def per_label(labels: torch.Tensor) -> torch.Tensor:
        logits = arc_margin_logits(cosine, labels, s, m)
        return F.cross_entropy(logits, labels.long(), reduction="none")

    return _reduce(_mixed(per_label, cosine, target), weight, reduction)


def composite_loss(
    logits: torch.Tensor,
    cosine: torch.Tensor,
    target: Target,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    c: float = COMPOSITE_C,
    s: float = ARC_SCALE,
    m: float = ARC_MARGIN,
) -> torch.Tensor:
    """Composite loss, eq. (12): ``c * L_arc-margin + (1 - c) * L_softmax`` (c = 0.2 in the paper)."""
    if not 0.0 <= c <= 1.0:
        raise ValueError(f"c must be in [0, 1], got {c}")
    arc = arc_margin_loss(cosine, target, weight, reduction, s, m)
    soft = softmax_cross_entropy(logits, target, weight, reduction)
    return c * arc + (1.0 - c) * soft


LOSS_MODES = ("softmax", "arc", "composite")


def head_loss(
    outputs: dict[str, torch.Tensor],
    target: Target,
    mode: str = "composite",
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    c: float = COMPOSITE_C,
    s: float = ARC_SCALE,
    m: float = ARC_MARGIN,
) -> torch.Tensor:
    """The training loss of one of the paper's set-ups from an :class:`~rxlib.models.RxNet` output dict.

    Args:
        outputs: dict with ``logits`` and ``cosine``.
        target: hard labels or a :class:`MixedTarget`.
        mode: ``'softmax'`` (eq. 3 only), ``'arc'`` (eq. 6 only) or ``'composite'`` (eq. 12).
    """
    if mode == "softmax":
        return softmax_cross_entropy(outputs["logits"], target, weight, reduction)
    if mode == "arc":
        return arc_margin_loss(outputs["cosine"], target, weight, reduction, s, m)
    if mode == "composite":
        return composite_loss(outputs["logits"], outputs["cosine"], target, weight, reduction, c, s, m)
    raise ValueError(f"loss mode must be one of {LOSS_MODES}, got {mode!r}")
