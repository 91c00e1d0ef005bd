"""Grad-CAM (Selvaraju et al. 2017; Sharma & Krishnamurthi 2022, section 3.5, eqs. 10-11).

For a class score ``y^c`` (the pre-softmax logit of the softmax head by default) and the feature maps
``A^k`` of one layer,

    alpha_k^c = 1/Z sum_ij d y^c / d A^k_ij                         (eq. 10)
    L^c       = ReLU(sum_k alpha_k^c A^k)                            (eq. 11)

The same maps as pytorch-grad-cam's ``GradCAM`` (tests/explain/test_cam.py checks them to 1e-5).
"""
from __future__ import annotations

import torch

from rxlib.explain.cam.base import cam_member


def grad_cam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``sum_k alpha_k^c A^k`` with ``alpha_k^c`` the spatial mean of the gradient (eqs. 10-11 before the ReLU).

    Args:
        activation, gradient: ``(B, K, h, w)``.

    Returns:
        ``(B, h, w)``.
    """
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # eq. 10
    return (weights * activation).sum(dim=1)  # eq. 11, ReLU in base.postprocess


grad_cam = cam_member(grad_cam_map, "grad_cam", "Grad-CAM maps of a batch (eqs. 10-11), on the model's device.")
