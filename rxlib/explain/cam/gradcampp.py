"""Grad-CAM++ (Chattopadhay et al. 2018, "Grad-CAM++: Generalized Gradient-Based Visual Explanations").

Grad-CAM weighs each feature map by its mean gradient (eq. 10 of Sharma & Krishnamurthi 2022);
Grad-CAM++ weighs each position by ``alpha_ij^kc`` so that several instances of a class in one image
all count. With ``g = d y^c / d A^k_ij`` (eq. 19 of Chattopadhay et al., with the exponential-score
simplification that replaces higher derivatives by powers of ``g``),

    alpha_ij^kc = g^2 / (2 g^2 + sum_ab A^k_ab g^3 + eps)     (0 where g = 0)
    w_k^c       = sum_ij ReLU(g) alpha_ij^kc
    L^c         = ReLU(sum_k w_k^c A^k)

exactly the formula of pytorch-grad-cam's ``GradCAMPlusPlus`` (``eps = 1e-6``), which
tests/explain/test_cam.py checks to 1e-5.
"""
from __future__ import annotations

import torch
from torch import nn

from rxlib.explain.cam.base import Targets, compute_cam

#: pytorch-grad-cam's epsilon in the denominator of ``alpha``.
ALPHA_EPS = 1e-6


def grad_cam_plus_plus_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k^c A^k`` with the Grad-CAM++ weights (before the ReLU).

    Args:
        activation, gradient: ``(B, K, h, w)``.

    Returns:
        ``(B, h, w)``.
    """
    grads_power_2 = gradient**2
    grads_power_3 = grads_power_2 * gradient
    sum_activations = activation.sum(dim=(2, 3), keepdim=True)
    aij = grads_power_2 / (2 * grads_power_2 + sum_activations * grads_power_3 + ALPHA_EPS)
    aij = torch.where(gradient != 0, aij, torch.zeros_like(aij))
    weights = (torch.relu(gradient) * aij).sum(dim=(2, 3), keepdim=True)
    return (weights * activation).sum(dim=1)


def grad_cam_plus_plus(
    model: nn.Module,
    images: torch.Tensor,
    cell_type: torch.Tensor | None = None,
    targets: Targets = None,
    *,
    layer: str | nn.Module | None = None,
    head: str = "logits",
    upsample: bool = False,
    normalise: bool = False,
    eval_mode: bool = True,
    return_scores: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM++ maps of a batch, on the model's device.

    Args:
        model, images, cell_type, targets, layer, head, upsample, normalise, eval_mode, return_scores:
            as :func:`rxlib.explain.cam.base.compute_cam` (``layer=None``: the architecture's default).

    Returns:
        ``(B, h, w)`` (or ``(B, H, W)`` with ``upsample``); with ``return_scores`` ``(cams, scores)``.
    """
    return compute_cam(grad_cam_plus_plus_map, model, images, cell_type, targets, layer=layer, head=head,
                       upsample=upsample, normalise=normalise, eval_mode=eval_mode, return_scores=return_scores)
