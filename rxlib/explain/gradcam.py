"""Grad-CAM (Selvaraju et al. 2017; Sharma & Krishnamurthi 2022, section 3.5, eqs. 10-11) for RxNet models.

For a class score ``y^c`` (the pre-softmax logit of the softmax head by default) and the feature maps
``A^k`` of one layer,

    alpha_k^c = 1/Z sum_ij d y^c / d A^k_ij                         (eq. 10)
    L^c       = ReLU(sum_k alpha_k^c A^k)                            (eq. 11)

The computation is batched and stays on the model's device: :func:`grad_cam` returns a torch tensor;
call ``.cpu().numpy()`` when arrays are wanted. Hooks live in :class:`LayerRecorder`, a context
manager that removes them when the block ends, also on error. Targets are small callables
(:class:`ClassTarget`), as in pytorch-grad-cam's ``ClassifierOutputTarget``.

Only the gradient with respect to the hooked layer is computed (``torch.autograd.grad``), not the
gradients of all parameters, and no parameter ``.grad`` is touched.

Conventions shared with pytorch-grad-cam (``base_cam.py``, ``utils/image.py::scale_cam_image``), so
that results agree: the model runs in eval mode (restored afterwards here); with ``normalise`` each
map is shifted to min 0 and divided by ``1e-7 + max``; with ``upsample`` the map is resized bilinearly
(half-pixel centres, as ``cv2.resize`` with ``INTER_LINEAR`` does for upsampling); with both, it is
normalised, resized and normalised again, exactly the order of pytorch-grad-cam.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:  # typing.Self is Python 3.11+; the package supports 3.10
    from typing import Self

#: Epsilon of pytorch-grad-cam's per-image min-max scaling.
NORMALISE_EPS = 1e-7

ModelOutput = Mapping[str, torch.Tensor] | torch.Tensor
Target = Callable[[ModelOutput], torch.Tensor]


class ClassTarget:
    """The score of one class from one head: the callable a Grad-CAM target is.

    Works on one sample's output (``(K,)`` tensors) or a batch (``(B, K)``), and on the dict an
    :class:`~rxlib.models.RxNet` returns as well as on a plain score tensor.

    Args:
        category: class index.
        head: ``'logits'`` (softmax head, pre-softmax; the paper's ``y^c``) or ``'cosine'``
            (arc-margin head).
    """

    def __init__(self, category: int, head: str = "logits") -> None:
        if head not in ("logits", "cosine"):
            raise ValueError(f"head must be 'logits' or 'cosine', got {head!r}")
        self.category = int(category)
        self.head = head

    def __call__(self, output: ModelOutput) -> torch.Tensor:
        scores = output[self.head] if isinstance(output, Mapping) else output
        if self.category >= scores.shape[-1] or self.category < -scores.shape[-1]:
            raise IndexError(f"class {self.category} out of range for {scores.shape[-1]} classes ({self.head})")
        return scores[..., self.category]

    def __repr__(self) -> str:
        return f"ClassTarget({self.category}, head={self.head!r})"


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Find a layer of a network by name or pass a module through.

    Args:
        model: an RxNet (names are dotted paths inside ``model.features``, e.g.
            ``'denseblock4.denselayer24'``), a wrapper with an ``inner`` RxNet such as
            :class:`~rxlib.explain.channels.DCMixNet`, or any module (names are dotted paths in it).
        layer: the name or the module itself.

    Returns:
        ``(name, module)``.

    Raises:
        KeyError: no layer of that name (the message names it and lists the top-level layers).
        TypeError: ``layer`` is neither a string nor a module.
    """
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, layer
        raise KeyError(f"the module {type(layer).__name__} given as layer is not part of {type(model).__name__}")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a name or an nn.Module, got {type(layer).__name__}")
    inner = getattr(model, "inner", model)
    if hasattr(inner, "layer") and hasattr(inner, "features"):
        return layer, inner.layer(layer)
    try:
        return layer, model.get_submodule(layer)
    except AttributeError as exc:
        top = [n for n, _ in model.named_children()]
        raise KeyError(f"{type(model).__name__} has no layer {layer!r}; top-level layers: {top}") from exc


class LayerRecorder:
    """Context manager that records the output of one layer during a forward pass.

    On entry a forward hook is put on the layer; it keeps the layer's output (the tensor that
    gradients are taken with respect to) and passes a clone downstream, so that in-place
    operations after the layer (``ReLU(inplace=True)``) cannot change what was recorded. On exit
    the hook is removed, whether the block ended normally or by an error.

    Args:
        module: the layer.
        name: its name, for error messages.

    Example:
        >>> with LayerRecorder(model.layer('denseblock4'), 'denseblock4') as rec:  # doctest: +SKIP
        ...     out = model(images, cell_type)
        ...     activation = rec.activation
    """

    def __init__(self, module: nn.Module, name: str = "layer") -> None:
        self.module = module
        self.name = name
        self.outputs: list[torch.Tensor] = []
        self.handle: torch.utils.hooks.RemovableHandle | None = None
        self.recording = False

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not self.recording:  # e.g. a checkpointed layer recomputed in the backward pass
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {self.name!r} returns {type(output).__name__}, not a tensor; hook another layer")
        self.outputs.append(output)
        return output.clone()

    def __enter__(self) -> Self:
        self.outputs = []
        self.recording = True
        self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.recording = False
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def stop(self) -> None:
        """Stop recording (the hook stays until exit but ignores later calls)."""
        self.recording = False

    @property
    def activation(self) -> torch.Tensor:
        """The recorded output ``(B, K, h, w)``.

        Raises:
            RuntimeError: the layer did not run, or ran more than once in the forward pass.
            ValueError: its output is not a 4-d feature map.
        """
        if not self.outputs:
            raise RuntimeError(f"layer {self.name!r} was not called in the forward pass")
        if len(self.outputs) > 1:
            raise RuntimeError(f"layer {self.name!r} was called {len(self.outputs)} times in one forward pass; "
                               "Grad-CAM needs a layer that runs once")
        act = self.outputs[0]
        if act.ndim != 4:
            raise ValueError(f"layer {self.name!r} gives output of shape {tuple(act.shape)}; Grad-CAM needs (B, K, h, w)")
        return act


def _as_targets(targets: int | Target | Sequence[int | Target] | None, scores: torch.Tensor, head: str) -> list[Target]:
    batch = scores.shape[0]
    if targets is None:
        return [ClassTarget(int(c), head) for c in scores.argmax(dim=1).tolist()]
    if isinstance(targets, int) or callable(targets):
        targets = [targets] * batch
    targets = list(targets)
    if len(targets) != batch:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch} images")
    return [ClassTarget(t, head) if isinstance(t, int) else t for t in targets]


def minmax_normalise(cam: torch.Tensor, eps: float = NORMALISE_EPS) -> torch.Tensor:
    """Per-image min-max scaling of ``(B, h, w)`` maps: ``(x - min) / (eps + max(x - min))``."""
    flat = cam.flatten(1)
    shifted = flat - flat.min(dim=1, keepdim=True).values
    return (shifted / (eps + shifted.max(dim=1, keepdim=True).values)).view_as(cam)


def upsample_cam(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, h, w)`` maps to ``size = (H, W)`` with half-pixel centres (as cv2)."""
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def grad_cam(
    model: nn.Module,
    images: torch.Tensor,
    cell_type: torch.Tensor | None = None,
    targets: int | Target | Sequence[int | Target] | None = None,
    *,
    layer: str | nn.Module = "denseblock4",
    head: str = "logits",
    upsample: bool = False,
    normalise: bool = False,
    eval_mode: bool = True,
    return_scores: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps of a batch (eqs. 10-11), on the model's device.

    Args:
        model: an RxNet (called as ``model(images, cell_type)``, output a dict) or any module called
            as ``model(images)`` (then ``cell_type`` must be None).
        images: ``(B, C, H, W)``; not modified, no gradient is taken with respect to it.
        cell_type: ``(B, n_cell_types)`` one-hot, passed through to the model.
        targets: per-image class indices or callables (``output -> score``; called on one sample's
            output, tensors of shape ``(K,)``), one for all images, or None for the predicted class.
        layer: name (dotted path inside ``features`` for an RxNet) or module.
        head: score used for integer/None targets: ``'logits'`` (pre-softmax) or ``'cosine'``.
        upsample: resize to the input's ``(H, W)``.
        normalise: per-image min-max scaling to [0, 1].
        eval_mode: run in eval mode (BatchNorm with running statistics); the training flag is restored.
        return_scores: also return the target scores ``(B,)``.

    Returns:
        ``(B, h, w)`` (or ``(B, H, W)`` with ``upsample``) float tensor on the model's device;
        with ``return_scores`` a tuple ``(cams, scores)``.

    Raises:
        ValueError: bad image or target shapes, or a layer whose output is not a feature map.
        KeyError: unknown layer name.
        RuntimeError: the layer is not used in the forward pass.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    name, module = resolve_layer(model, layer)
    device = next(model.parameters()).device
    images = images.to(device)
    was_training = model.training
    if eval_mode:
        model.eval()
    try:
        with torch.enable_grad(), LayerRecorder(module, name) as recorder:
            if cell_type is None:
                output = model(images)
            else:
                output = model(images, cell_type.to(device))
            recorder.stop()
            activation = recorder.activation
            scores_all = output[head] if isinstance(output, Mapping) else output
            target_fns = _as_targets(targets, scores_all, head)
            if isinstance(output, Mapping):
                per_sample = [{k: v[i] for k, v in output.items()} for i in range(images.shape[0])]
            else:
                per_sample = [output[i] for i in range(images.shape[0])]
            scores = torch.stack([t(o).reshape(()) for t, o in zip(target_fns, per_sample)])
            if not activation.requires_grad:
                raise RuntimeError(f"layer {name!r} output does not require grad (frozen part of the network?)")
            (grads,) = torch.autograd.grad(scores.sum(), activation)
        with torch.no_grad():
            weights = grads.mean(dim=(2, 3), keepdim=True)  # eq. 10
            cam = torch.relu((weights * activation).sum(dim=1))  # eq. 11
            if normalise:  # before and after resizing, as pytorch-grad-cam's scale_cam_image
                cam = minmax_normalise(cam)
            if upsample:
                cam = upsample_cam(cam, tuple(images.shape[-2:]))
                if normalise:
                    cam = minmax_normalise(cam)
    finally:
        model.train(was_training)
    cam = cam.detach()
    return (cam, scores.detach()) if return_scores else cam
