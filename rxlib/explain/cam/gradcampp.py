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

from rxlib.explain.cam.base import cam_member

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


grad_cam_plus_plus = cam_member(grad_cam_plus_plus_map, "grad_cam_plus_plus",
                                "Grad-CAM++ maps of a batch, on the model's device.")
