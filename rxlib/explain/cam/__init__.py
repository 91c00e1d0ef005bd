"""Class activation maps: a small family over one base (as pytorch-grad-cam, one module per method).

- :mod:`~rxlib.explain.cam.base`: targets, the layer (``layer=None`` is the architecture's default),
  the hook, the forward + gradient step and the post-processing every member shares.
- :mod:`~rxlib.explain.cam.gradcam`: Grad-CAM (eqs. 10-11 of the paper).
- :mod:`~rxlib.explain.cam.gradcampp`: Grad-CAM++ (Chattopadhay et al. 2018).
- :mod:`~rxlib.explain.cam.layercam`: LayerCAM (Jiang et al. 2021).

Every member is called as ``member(model, images, cell_type, targets, layer=None, ...)`` and returns
``(B, h, w)`` maps on the model's device. :data:`CAM_METHODS` names them.
"""
from rxlib.explain.cam.base import (
    ClassTarget,
    LayerGradient,
    LayerRecorder,
    compute_cam,
    default_layer,
    input_gradient,
    layer_gradient,
    minmax_normalise,
    resolve_layer,
    upsample_cam,
)
from rxlib.explain.cam.gradcam import grad_cam
from rxlib.explain.cam.gradcampp import grad_cam_plus_plus
from rxlib.explain.cam.layercam import layer_cam

#: The members by name, for loops over methods.
CAM_METHODS = {"Grad-CAM": grad_cam, "Grad-CAM++": grad_cam_plus_plus, "LayerCAM": layer_cam}

__all__ = [
    "CAM_METHODS",
    "ClassTarget",
    "LayerGradient",
    "LayerRecorder",
    "compute_cam",
    "default_layer",
    "grad_cam",
    "grad_cam_plus_plus",
    "input_gradient",
    "layer_cam",
    "layer_gradient",
    "minmax_normalise",
    "resolve_layer",
    "upsample_cam",
]
