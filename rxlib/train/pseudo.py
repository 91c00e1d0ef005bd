"""Pseudo-labelling, section 3.3 (eq. 7; Lee 2013).

Unlabelled images get the hard label ``argmax_j p_j`` of the network's current prediction, and their
loss enters with weight ``alpha(t)``::

    L = 1/N sum_labelled loss + alpha(t) * 1/M sum_unlabelled loss(pseudo-label)

The paper prints the ramp of the schedule as ``(t - T1) / (T2 - T1)``, which reaches 1, not
``alpha_f``, at ``t = T2`` and so jumps there unless ``alpha_f = 1``. Here the ramp is scaled by
``alpha_f``: ``alpha(t) = alpha_f * (t - T1) / (T2 - T1)``, continuous at both ends, as in Lee (2013).
"""
from __future__ import annotations

import torch


def pseudo_labels(scores: torch.Tensor) -> torch.Tensor:
    """Hard pseudo-labels (eq. 7's one-hot as class indices): ``argmax`` over classes of ``(N, K)`` scores.

    Probabilities, logits and cosines give the same argmax; the result is detached, int64, ``(N,)``.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, K), got shape {tuple(scores.shape)}")
    return scores.detach().argmax(dim=1)


def alpha_schedule(t: float, t1: float, t2: float, alpha_f: float) -> float:
    """Weight of the pseudo-label loss at epoch ``t``.

    Returns:
        0 for ``t <= t1``; ``alpha_f * (t - t1) / (t2 - t1)`` for ``t1 < t < t2``; ``alpha_f`` for ``t >= t2``.

    Raises:
        ValueError: ``t2 <= t1`` or ``alpha_f < 0``.
    """
    if t2 <= t1:
        raise ValueError(f"T2 must be greater than T1, got T1={t1}, T2={t2}")
    if alpha_f < 0:
        raise ValueError(f"alpha_f must be >= 0, got {alpha_f}")
    if t <= t1:
        return 0.0
    if t >= t2:
        return float(alpha_f)
    return float(alpha_f) * (t - t1) / (t2 - t1)


def pseudo_label_objective(
    labelled_losses: torch.Tensor, unlabelled_losses: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Eq. (7) from per-sample losses: ``mean(labelled) + alpha * mean(unlabelled)``.

    Either part may be empty (it then contributes 0).
    """
    labelled = labelled_losses.mean() if labelled_losses.numel() else labelled_losses.new_zeros(())
    unlabelled = unlabelled_losses.mean() if unlabelled_losses.numel() else unlabelled_losses.new_zeros(())
    return labelled + alpha * unlabelled
