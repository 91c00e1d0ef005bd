"""LayerCAM (Jiang et al. 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization").

Instead of one weight per feature map, every position keeps its own positive gradient as its weight,
which keeps fine detail at early layers:

    w_ij^kc = ReLU(d y^c / d A^k_ij)
    L^c     = ReLU(sum_k w^kc * A^k)          (element-wise product)

the formula of pytorch-grad-cam's ``LayerCAM``, which tests/explain/test_cam.py checks to 1e-5.
"""
from __future__ import annotations

import torch
from torch import nn

from rxlib.explain.cam.base import Targets, compute_cam


def layer_cam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``sum_k ReLU(gradient^k) * A^k`` (before the ReLU).

    Args:
        activation, gradient: ``(B, K, h, w)``.

    Returns:
        ``(B, h, w)``.
    """
    return (torch.relu(gradient) * activation).sum(dim=1)


def layer_cam(
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
    """LayerCAM maps of a batch, on the model's device.

    Args:
        model, images, cell_type, targets, layer, head, upsample, normalise, eval_mode, return_scores:
            as :func:`rxlib.explain.cam.base.compute_cam` (``layer=None``: the architecture's default).

    Returns:
        ``(B, h, w)`` (or ``(B, H, W)`` with ``upsample``); with ``return_scores`` ``(cams, scores)``.
    """
    return compute_cam(layer_cam_map, model, images, cell_type, targets, layer=layer, head=head, upsample=upsample,
                       normalise=normalise, eval_mode=eval_mode, return_scores=return_scores)
