"""What every CAM method shares: targets, the layer, the hook, one forward + gradient step, post-processing.

The members of the family (:mod:`~rxlib.explain.cam.gradcam`, :mod:`~rxlib.explain.cam.gradcampp`,
:mod:`~rxlib.explain.cam.layercam`) differ only in how they turn the feature maps ``A^k`` of one layer
and the gradients ``d y^c / d A^k`` into a map; everything else is here, as in pytorch-grad-cam's
``base_cam.py``:

- targets are small callables (:class:`ClassTarget`, like ``ClassifierOutputTarget``);
- the layer is found in one place (:func:`resolve_layer`); ``layer=None`` is the architecture's
  default (:func:`default_layer`: ``denseblock4`` of a DenseNet, ``layer4`` of a ResNet, from
  :data:`rxlib.models.rxnet.DEFAULT_TARGET_LAYER`), for an RxNet or a wrapper of one (DCMIX);
- the hook lives in a context manager (:class:`LayerRecorder`) that removes it when the block ends,
  also on error;
- :func:`layer_gradient` runs the forward pass and takes the gradient of the target scores with
  respect to the hooked layer only (``torch.autograd.grad``: no parameter ``.grad`` is touched);
  :func:`input_gradient` does the same with respect to the images (gradient x input of
  :mod:`~rxlib.explain.channels`);
- :func:`compute_cam` applies a member's map and post-processes it as pytorch-grad-cam does
  (``base_cam.py``, ``utils/image.py::scale_cam_image``), so that results agree: the model runs in
  eval mode (restored afterwards); the map goes through a ReLU; with ``normalise`` each map is shifted
  to min 0 and divided by ``1e-7 + max``; with ``upsample`` it is resized bilinearly (half-pixel
  centres, as ``cv2.resize`` with ``INTER_LINEAR`` does for upsampling); with ``normalise`` it is
  normalised, resized (with ``upsample``) and normalised again, exactly pytorch-grad-cam's order.

Everything is batched and stays on the model's device.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from rxlib.models.rxnet import DEFAULT_TARGET_LAYER, CellTypeClassifier

if TYPE_CHECKING:  # typing.Self is Python 3.11+; the package supports 3.10
    from typing import Self

#: Epsilon of pytorch-grad-cam's per-image min-max scaling.
NORMALISE_EPS = 1e-7

ModelOutput = Mapping[str, torch.Tensor] | torch.Tensor
Target = Callable[[ModelOutput], torch.Tensor]
Targets = int | Target | Sequence[int | Target] | None
#: A member's map: ``(activation (B, K, h, w), gradient (B, K, h, w)) -> (B, h, w)`` before the ReLU.
CamMap = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ClassTarget:
    """The score of one class from one head: the callable a CAM target is.

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


def _as_targets(targets: Targets, scores: torch.Tensor, head: str) -> list[Target]:
    """One callable per image: the predicted class for None, a :class:`ClassTarget` for an int."""
    batch = scores.shape[0]
    if targets is None:
        return [ClassTarget(int(c), head) for c in scores.argmax(dim=1).tolist()]
    if isinstance(targets, int) or callable(targets):
        targets = [targets] * batch
    targets = list(targets)
    if len(targets) != batch:
        raise ValueError(f"got {len(targets)} targets for a batch of {batch} images")
    return [ClassTarget(t, head) if isinstance(t, int) else t for t in targets]


def check_images(images: torch.Tensor) -> None:
    """Raise a ValueError naming the shape unless ``images`` is a ``(B, C, H, W)`` tensor."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")


# --- the layer ---------------------------------------------------------------------------------------


def _network(model: nn.Module) -> nn.Module:
    """The RxNet inside a DCMIX wrapper (``.inner``) or a :class:`CellTypeClassifier`; else the model."""
    if isinstance(model, CellTypeClassifier):
        model = model.model
    return getattr(model, "inner", model)


def default_layer(model: nn.Module, *, last: bool = False) -> str:
    """The architecture's default CAM layer, the one place it is decided.

    Args:
        model: an RxNet, or a wrapper of one (a DCMIX network's ``inner``, a
            :class:`~rxlib.models.rxnet.CellTypeClassifier`).
        last: the last layer *inside* that block instead of its output: the paper's Figure 12 layer
            ``denseblock4.denselayer24`` of DenseNet-161 (``denseblock4.denselayer4`` in the tiny
            DenseNet), ``layer4.1`` (the last residual block) of a ResNet-18.

    Returns:
        A dotted path inside ``features``: :data:`~rxlib.models.rxnet.DEFAULT_TARGET_LAYER` of the
        model's family (``denseblock4`` / ``layer4``).

    Raises:
        ValueError: the model has no known architecture family (give the layer explicitly).
    """
    net = _network(model)
    family = getattr(net, "family", None)
    if family not in DEFAULT_TARGET_LAYER or not hasattr(net, "layer"):
        raise ValueError(f"{type(net).__name__} has no default CAM layer (not an RxNet of a known family); "
                         "give layer= explicitly")
    name = DEFAULT_TARGET_LAYER[family]
    if last:
        children = [child for child, _ in net.layer(name).named_children()]
        name = f"{name}.{children[-1]}" if children else name
    return name


def resolve_layer(model: nn.Module, layer: str | nn.Module | None = None) -> tuple[str, nn.Module]:
    """Find a layer of a network by name, pass a module through, or take the architecture's default.

    Args:
        model: an RxNet (names are dotted paths inside ``model.features``, e.g.
            ``'denseblock4.denselayer24'``), a wrapper with an ``inner`` RxNet such as
            :class:`~rxlib.explain.dcmix.DCMixNet`, or any module (names are dotted paths in it).
        layer: the name, the module itself, or None for :func:`default_layer`.

    Returns:
        ``(name, module)``.

    Raises:
        KeyError: no layer of that name (a one-line message that names it and lists the top-level layers).
        ValueError: ``layer=None`` for a model without a default layer.
        TypeError: ``layer`` is neither a string, a module nor None.
    """
    if layer is None:
        layer = default_layer(model)
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, layer
        raise KeyError(f"the module {type(layer).__name__} given as layer is not part of {type(model).__name__}")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a name or an nn.Module, got {type(layer).__name__}")
    net = _network(model)
    if hasattr(net, "layer") and hasattr(net, "features"):
        return layer, net.layer(layer)
    try:
        return layer, model.get_submodule(layer)
    except AttributeError:
        top = [n for n, _ in model.named_children()]
        raise KeyError(f"{type(model).__name__} has no layer {layer!r}; top-level layers: {top}") from None


class LayerRecorder:
    """Context manager that records the output of one layer during a forward pass.

    On entry a forward hook is put on the layer; it keeps the layer's output (the tensor that
    gradients are taken with respect to) and passes a clone downstream, so that in-place
    operations after the layer (``ReLU(inplace=True)`` in a dense layer, ``out += identity`` after a
    ResNet block's ``bn2``) cannot change what was recorded. On exit the hook is removed, whether the
    block ended normally or by an error.

    With ``leaf=True`` the autograd graph starts at the layer: on entry gradient recording is turned
    off, and the hook records the output as a new leaf that requires grad and turns recording on for
    the rest of the forward pass; on exit the grad mode is restored. The network before the layer then
    runs as in inference (nothing kept for a backward pass, no checkpointing), and a backward pass from
    the scores ends at the layer. Gradients with respect to the recorded output are the same.

    Args:
        module: the layer.
        name: its name, for error messages.
        leaf: start the autograd graph at the layer (see above).

    Example:
        >>> with LayerRecorder(model.layer('denseblock4'), 'denseblock4') as rec:  # doctest: +SKIP
        ...     out = model(images, cell_type)
        ...     activation = rec.activation
    """

    def __init__(self, module: nn.Module, name: str = "layer", *, leaf: bool = False) -> None:
        self.module = module
        self.name = name
        self.leaf = leaf
        self.outputs: list[torch.Tensor] = []
        self.handle: torch.utils.hooks.RemovableHandle | None = None
        self.recording = False
        self._grad_mode: bool | None = None

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not self.recording:  # e.g. a checkpointed layer recomputed in the backward pass
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"layer {self.name!r} returns {type(output).__name__}, not a tensor; hook another layer")
        if self.leaf:
            output = output.detach().requires_grad_(True)
            torch.set_grad_enabled(True)  # from here on; __exit__ restores the caller's mode
        self.outputs.append(output)
        return output.clone()

    def __enter__(self) -> Self:
        self.outputs = []
        self.recording = True
        if self.leaf:
            self._grad_mode = torch.is_grad_enabled()
            torch.set_grad_enabled(False)
        self.handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.recording = False
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        if self._grad_mode is not None:
            torch.set_grad_enabled(self._grad_mode)
            self._grad_mode = None

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
                               "a CAM needs a layer that runs once")
        act = self.outputs[0]
        if act.ndim != 4:
            raise ValueError(f"layer {self.name!r} gives output of shape {tuple(act.shape)}; a CAM needs (B, K, h, w)")
        return act


# --- the forward + gradient step ---------------------------------------------------------------------


@contextmanager
def evaluating(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Run a block with the model in eval mode (BatchNorm with running statistics); the training flag
    is restored when the block ends, also on error."""
    was_training = model.training
    if eval_mode:
        model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def score_targets(model: nn.Module, images: torch.Tensor, cell_type: torch.Tensor | None, targets: Targets,
                  head: str = "logits") -> tuple[torch.Tensor, list[Target]]:
    """One forward pass (under the caller's grad mode) and each image's target score.

    Args:
        model: called as ``model(images, cell_type)``, or ``model(images)`` when ``cell_type`` is None.
        images, cell_type: on the model's device.
        targets: per-image class indices or callables (called on one sample's output, tensors of
            shape ``(K,)``), one for all images, or None for the predicted class.
        head: score used for integer/None targets: ``'logits'`` (pre-softmax) or ``'cosine'``.

    Returns:
        ``(scores (B,), targets)``: the targets as callables, fixed (the predicted class of *these*
        images), so that the same targets can score changed images (occlusion).
    """
    output = model(images) if cell_type is None else model(images, cell_type)
    target_fns = _as_targets(targets, output[head] if isinstance(output, Mapping) else output, head)
    if isinstance(output, Mapping):
        per_sample = [{k: v[i] for k, v in output.items()} for i in range(images.shape[0])]
    else:
        per_sample = [output[i] for i in range(images.shape[0])]
    return torch.stack([t(o).reshape(()) for t, o in zip(target_fns, per_sample)]), target_fns


def on_model_device(model: nn.Module, images: torch.Tensor,
                    cell_type: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check ``images`` (:func:`check_images`) and move them and the cell type to the model's device."""
    check_images(images)
    device = next(model.parameters()).device
    return images.to(device), None if cell_type is None else cell_type.to(device)


class LayerGradient(NamedTuple):
    """What one forward + gradient step gives a CAM: ``activation`` ``A^k`` and ``gradient``
    ``d y^c / d A^k`` (both ``(B, K, h, w)``, detached) and the target ``scores`` ``y^c`` ``(B,)``."""

    activation: torch.Tensor
    gradient: torch.Tensor
    scores: torch.Tensor


def layer_gradient(model: nn.Module, images: torch.Tensor, cell_type: torch.Tensor | None = None,
                   targets: Targets = None, *, layer: str | nn.Module | None = None, head: str = "logits",
                   eval_mode: bool = True) -> LayerGradient:
    """The feature maps of one layer and the gradient of the target scores with respect to them.

    Only that gradient is computed (``torch.autograd.grad``), not those of the parameters, and no
    parameter ``.grad`` is touched. The network before the layer runs without recording a graph
    (:class:`LayerRecorder` with ``leaf=True``): the backward pass runs from the scores to the layer
    and no further, and the forward pass up to the layer costs what inference costs. Arguments as
    :func:`compute_cam`.

    Raises:
        ValueError: bad image or target shapes, or a layer whose output is not a feature map.
        KeyError: unknown layer name.
        RuntimeError: the layer is not used in the forward pass, or used more than once.
    """
    images, cell_type = on_model_device(model, images, cell_type)
    name, module = resolve_layer(model, layer)
    with evaluating(model, eval_mode), LayerRecorder(module, name, leaf=True) as recorder:
        scores, _ = score_targets(model, images, cell_type, targets, head)
        recorder.stop()
        activation = recorder.activation
        (gradient,) = torch.autograd.grad(scores.sum(), activation)
    return LayerGradient(activation.detach(), gradient, scores.detach())


def input_gradient(model: nn.Module, images: torch.Tensor, cell_type: torch.Tensor | None = None,
                   targets: Targets = None, *, head: str = "logits",
                   eval_mode: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient of the target scores with respect to the images (a detached copy gets it; the
    images are not changed). Arguments as :func:`compute_cam`.

    Returns:
        ``(gradient (B, C, H, W), scores (B,))`` on the model's device.
    """
    images, cell_type = on_model_device(model, images, cell_type)
    x = images.detach().clone().requires_grad_(True)
    with evaluating(model, eval_mode), torch.enable_grad():
        scores, _ = score_targets(model, x, cell_type, targets, head)
        (gradient,) = torch.autograd.grad(scores.sum(), x)
    return gradient, scores.detach()


# --- post-processing ---------------------------------------------------------------------------------


def minmax_normalise(cam: torch.Tensor, eps: float = NORMALISE_EPS) -> torch.Tensor:
    """Per-image min-max scaling of ``(B, h, w)`` maps: ``(x - min) / (eps + max(x - min))``."""
    flat = cam.flatten(1)
    shifted = flat - flat.min(dim=1, keepdim=True).values
    return (shifted / (eps + shifted.max(dim=1, keepdim=True).values)).view_as(cam)


def upsample_cam(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, h, w)`` maps to ``size = (H, W)`` with half-pixel centres (as cv2)."""
    return F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def postprocess(cam: torch.Tensor, size: tuple[int, int], *, upsample: bool = False,
                normalise: bool = False) -> torch.Tensor:
    """ReLU, then pytorch-grad-cam's order: normalise, resize to ``size``, normalise again.

    pytorch-grad-cam scales each layer's map (``scale_cam_image`` with the resize) and then the
    aggregate over layers once more, also when nothing is resized; the second pass is not a no-op
    for maps whose maximum is small (``max / (1e-7 + max)`` is ``1 - 1e-4`` at ``max = 1e-3``), so it
    is done here too.
    """
    cam = torch.relu(cam)
    if normalise:
        cam = minmax_normalise(cam)
    if upsample:
        cam = upsample_cam(cam, size)
    if normalise:
        cam = minmax_normalise(cam)
    return cam


def compute_cam(
    cam_map: CamMap,
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
    """One member's CAMs of a batch: :func:`layer_gradient`, the member's ``cam_map``, :func:`postprocess`.

    Args:
        cam_map: ``(activation, gradient) -> (B, h, w)`` map before the ReLU (the member's equation).
        model: an RxNet (called as ``model(images, cell_type)``, output a dict) or any module called
            as ``model(images)`` (then ``cell_type`` must be None).
        images: ``(B, C, H, W)``; not modified, no gradient is taken with respect to it.
        cell_type: ``(B, n_cell_types)`` one-hot, passed through to the model.
        targets: per-image class indices or callables (``output -> score``; called on one sample's
            output, tensors of shape ``(K,)``), one for all images, or None for the predicted class.
        layer: name (dotted path inside ``features`` for an RxNet), module, or None for the
            architecture's default (:func:`default_layer`: ``denseblock4`` / ``layer4``).
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
    found = layer_gradient(model, images, cell_type, targets, layer=layer, head=head, eval_mode=eval_mode)
    with torch.no_grad():
        cam = postprocess(cam_map(found.activation, found.gradient), tuple(images.shape[-2:]),
                          upsample=upsample, normalise=normalise)
    return (cam, found.scores) if return_scores else cam


def cam_member(cam_map: CamMap, name: str, summary: str) -> Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]:
    """A member of the family: ``member(model, images, cell_type=None, targets=None, **options)`` runs
    :func:`compute_cam` with ``cam_map`` (the member's equation), so that each member is its map alone.

    Args:
        cam_map: ``(activation, gradient) -> (B, h, w)`` before the ReLU.
        name: the function's name (``grad_cam``).
        summary: the first line of its docstring.
    """

    def member(model: nn.Module, images: torch.Tensor, cell_type: torch.Tensor | None = None, targets: Targets = None,
               **options) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return compute_cam(cam_map, model, images, cell_type, targets, **options)

    member.__name__ = member.__qualname__ = name
    member.__module__ = cam_map.__module__
    member.__doc__ = (
        f"{summary}\n\n"
        f"    ``{name}(model, images, cell_type=None, targets=None, *, layer=None, head='logits',\n"
        "    upsample=False, normalise=False, eval_mode=True, return_scores=False)``: the arguments,\n"
        "    return value and errors of :func:`rxlib.explain.cam.base.compute_cam` (``layer=None``: the\n"
        "    architecture's default, ``denseblock4`` of a DenseNet, ``layer4`` of a ResNet), with the map\n"
        f"    :func:`{cam_map.__module__}.{cam_map.__name__}`.\n")
    member.cam_map = cam_map
    return member

