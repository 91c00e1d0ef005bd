"""LayerCAM (Jiang et al. 2021, "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization").

Instead of one weight per feature map, every position keeps its own positive gradient as its weight,
which keeps fine detail at early layers:

    w_ij^kc = ReLU(d y^c / d A^k_ij)
    L^c     = ReLU(sum_k w^kc * A^k)          (element-wise product)

the formula of pytorch-grad-cam's ``LayerCAM``, which tests/explain/test_cam.py checks to 1e-5.
"""
from __future__ import annotations

import torch

from rxlib.explain.cam.base import cam_member


def layer_cam_map(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``sum_k ReLU(gradient^k) * A^k`` (before the ReLU).

    Args:
        activation, gradient: ``(B, K, h, w)``.

    Returns:
        ``(B, h, w)``.
    """
    return (torch.relu(gradient) * activation).sum(dim=1)


layer_cam = cam_member(layer_cam_map, "layer_cam", "LayerCAM maps of a batch, on the model's device.")
