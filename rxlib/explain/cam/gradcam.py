"""Grad-CAM (Selvaraju et al. 2017; Sharma & Krishnamurthi 2022, section 3.5, eqs. 10-11).

For a class score ``y^c`` (the pre-softmax logit of the softmax head by default) and the feature maps
``A^k`` of one layer,

    alpha_k^c = 1/Z sum_ij d y^c / d A^k_ij                         (eq. 10)
    L^c       = ReLU(sum_k alpha_k^c A^k)                            (eq. 11)

The same maps as pytorch-grad-cam's ``GradCAM`` (tests/explain/test_cam.py checks them to 1e-5).
"""
from __future__ import annotations

import torch
from torch import nn

from rxlib.explain.cam.base import Targets, compute_cam


def grad_cam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``sum_k alpha_k^c A^k`` with ``alpha_k^c`` the spatial mean of the gradient (eqs. 10-11 before the ReLU).

    Args:
        activation, gradient: ``(B, K, h, w)``.

    Returns:
        ``(B, h, w)``.
    """
    weights = gradient.mean(dim=(2, 3), keepdim=True)  # eq. 10
    return (weights * activation).sum(dim=1)  # eq. 11, ReLU in base.postprocess


def grad_cam(
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
    """Grad-CAM maps of a batch (eqs. 10-11), on the model's device.

    Args:
        model, images, cell_type, targets, layer, head, upsample, normalise, eval_mode, return_scores:
            as :func:`rxlib.explain.cam.base.compute_cam` (``layer=None``: the architecture's default,
            ``denseblock4`` of a DenseNet, ``layer4`` of a ResNet).

    Returns:
        ``(B, h, w)`` (or ``(B, H, W)`` with ``upsample``); with ``return_scores`` ``(cams, scores)``.
    """
    return compute_cam(grad_cam_map, model, images, cell_type, targets, layer=layer, head=head, upsample=upsample,
                       normalise=normalise, eval_mode=eval_mode, return_scores=return_scores)
