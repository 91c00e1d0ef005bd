"""Looking inside a network: stage output sizes (Table 2), parameter counts, 1x1 filters (Figure 10)."""
from __future__ import annotations

import copy

import pandas as pd
import torch
from torch import nn
from torchvision.models.densenet import _DenseBlock, _Transition
from torchvision.models.resnet import BasicBlock, Bottleneck

from rxlib.models.backbones import build_backbone, check_arch
from rxlib.models.rxnet import STAGE_NAMES, RxNet

#: The paper's Table 2 (DenseNet-161 on a 6 x 512 x 512 input): (stage, channels, height, width).
PAPER_TABLE2: tuple[tuple[str, int, int, int], ...] = (
    ("conv0", 96, 256, 256),
    ("pool0", 96, 128, 128),
    ("denseblock1", 384, 128, 128),
    ("transition1", 192, 64, 64),
    ("denseblock2", 768, 64, 64),
    ("transition2", 384, 32, 32),
    ("denseblock3", 2112, 32, 32),
    ("transition3", 1056, 16, 16),
    ("denseblock4", 2208, 16, 16),
)


def _pair(value) -> int:
    return value[0] if isinstance(value, tuple) else value


def layer_spec(module: nn.Module) -> str:
    """A short human description of a stage, in the wording of the paper's Table 2."""
    if isinstance(module, nn.Conv2d):
        k, s = _pair(module.kernel_size), _pair(module.stride)
        return f"{k}x{k} Conv, stride = {s}"
    if isinstance(module, nn.MaxPool2d):
        k, s = _pair(module.kernel_size), _pair(module.stride)
        return f"{k}x{k} MaxPool, stride = {s}"
    if isinstance(module, _DenseBlock):
        return f"[1x1 Conv, stride = 1; 3x3 Conv, stride = 1] x {len(module)}"
    if isinstance(module, _Transition):
        k, s = _pair(module.pool.kernel_size), _pair(module.pool.stride)
        return f"[1x1 Conv, stride = 1; {k}x{k} AvgPool, stride = {s}]"
    if isinstance(module, nn.Sequential) and len(module) and isinstance(module[0], (BasicBlock, Bottleneck)):
        stride = _pair(module[0].conv2.stride) if isinstance(module[0], Bottleneck) else _pair(module[0].conv1.stride)
        return f"{type(module[0]).__name__} x {len(module)}, stride = {stride}"
    return type(module).__name__


def stage_output_sizes(model_or_arch: RxNet | str, input_size: tuple[int, int, int] = (6, 512, 512)) -> pd.DataFrame:
    """Output size of every backbone stage for one input, measured with forward hooks (Table 2).

    The forward pass runs on PyTorch's ``meta`` device (shapes only, no arithmetic), so even
    DenseNet-161 at 6 x 512 x 512 takes well under a second; a given model is copied there and not
    changed. If the meta device cannot run the model, a real no-grad forward of batch 1 in eval
    mode is used instead (the model's training flag is restored afterwards).

    Args:
        model_or_arch: an :class:`RxNet` or an architecture name (then built without weights).
        input_size: ``(channels, height, width)`` of the input.

    Returns:
        DataFrame with columns ``stage``, ``channels``, ``height``, ``width``, ``spec`` (one row per stage).
    """
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (channels, height, width), got {input_size}")
    if isinstance(model_or_arch, str):
        family = check_arch(model_or_arch).family
        with torch.device("meta"):
            features, _ = build_backbone(model_or_arch, in_channels=input_size[0])
        device = torch.device("meta")
    elif isinstance(model_or_arch, RxNet):
        family = model_or_arch.family
        try:
            features = copy.deepcopy(model_or_arch.features).to("meta")
            device = torch.device("meta")
        except (RuntimeError, NotImplementedError):
            features = model_or_arch.features
            device = next(features.parameters()).device
    else:
        raise TypeError(f"expected an RxNet or an architecture name, got {type(model_or_arch).__name__}")

    names = STAGE_NAMES[family]
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    was_training = features.training
    try:
        for name in names:
            module = getattr(features, name)
            handles.append(module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape))))
        features.eval()
        with torch.no_grad():
            features(torch.zeros((1, *input_size), device=device))
    finally:
        for handle in handles:
            handle.remove()
        features.train(was_training)
    rows = [
        {"stage": n, "channels": shapes[n][1], "height": shapes[n][2], "width": shapes[n][3], "spec": layer_spec(getattr(features, n))}
        for n in names
    ]
    return pd.DataFrame(rows, columns=["stage", "channels", "height", "width", "spec"])


def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 as a DataFrame (columns ``stage``, ``channels``, ``height``, ``width``)."""
    return pd.DataFrame(list(PAPER_TABLE2), columns=["stage", "channels", "height", "width"])


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: RxNet) -> pd.DataFrame:
    """Parameter counts of the parts of an :class:`RxNet`: features, neck, softmax head, arc templates."""
    parts = {
        "features": model.features,
        "neck": model.neck,
        "softmax_head": model.softmax_head,
    }
    rows = [{"part": name, "parameters": count_parameters(m)} for name, m in parts.items()]
    rows.append({"part": "arc_templates", "parameters": model.arc_templates.numel()})
    rows.append({"part": "total", "parameters": count_parameters(model)})
    return pd.DataFrame(rows)


def dense_layer_1x1_weights(model: RxNet, block: int, layer: int) -> torch.Tensor:
    """The 1x1 convolution weights of one dense layer as a matrix (paper Figure 10).

    Args:
        model: a DenseNet-based :class:`RxNet`.
        block: dense block number, 1-based (``denseblock1`` .. ``denseblock4``).
        layer: dense layer number inside the block, 1-based (``denselayer1`` ..).

    Returns:
        A detached CPU tensor ``(out_channels, in_channels)`` of ``denseblock{block}.denselayer{layer}.conv1``:
        row k is the k-th 1x1 filter, i.e. the weights of eq. (14).

    Raises:
        ValueError: not a DenseNet, or no such block/layer (the message names the valid range).
    """
    if model.family != "densenet":
        raise ValueError(f"dense layers exist only in DenseNets, not in {model.arch!r}")
    n_blocks = sum(1 for n, _ in model.features.named_children() if n.startswith("denseblock"))
    if not 1 <= block <= n_blocks:
        raise ValueError(f"block must be in 1..{n_blocks} for {model.arch}, got {block}")
    dense_block = getattr(model.features, f"denseblock{block}")
    if not 1 <= layer <= len(dense_block):
        raise ValueError(f"layer must be in 1..{len(dense_block)} for denseblock{block} of {model.arch}, got {layer}")
    conv = getattr(dense_block, f"denselayer{layer}").conv1
    return conv.weight.detach().to("cpu").reshape(conv.out_channels, conv.in_channels).clone()
