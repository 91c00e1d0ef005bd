"""Convolutional backbones for six-channel RxRx1 images, and loading of ImageNet weights into them.

Four architectures are known (:data:`ARCHITECTURES`):

- ``densenet161``: torchvision's DenseNet-161 (growth rate 48, blocks 6/12/36/24, 96 initial
  features), in its memory-efficient form (each dense layer's bottleneck is recomputed in the
  backward pass instead of stored), as in section 4.1 of Sharma & Krishnamurthi (2022). 2208 features.
- ``resnet50`` / ``resnet18``: torchvision's ResNets, the comparison of section 4.1. 2048 / 512 features.
- ``tiny_densenet``: the same DenseNet design at toy size (growth rate 12, blocks 2/4/6/4, 24 initial
  features; about 0.15 M backbone parameters, 102 features), for the CPU smoke profile and the tests.
  No pretrained weights exist for it.
- ``tiny_resnet``: torchvision's ResNet design (7x7 stem, max-pool, four stages of BasicBlocks) at toy
  size (one block per stage, widths 16/32/64/128; about 0.3 M backbone parameters, 128 features): the
  smoke profile's comparison backbone, of the same order of size and cost as ``tiny_densenet`` (ResNet-18,
  70 times larger, trained 4-5 times slower per image on the CPU and dominated the smoke run).

Every backbone is returned as an ``nn.Sequential`` whose children are the named stages of the
architecture (``conv0``, ``pool0``, ``denseblock1``, ``transition1``, ... for DenseNets; ``conv1``,
``maxpool``, ``layer1``, ... for ResNets), ending in a ReLU so that its output is exactly what the
global pooling sees (torchvision applies that last ReLU functionally in ``DenseNet.forward``).

Pretrained weights are never downloaded. ``pretrained=True`` looks for the file torchvision would
have downloaded in its cache (``$TORCH_HOME/hub/checkpoints/``, see :func:`torch.hub.get_dir`);
``pretrained=<path>`` reads a state dict in torchvision's key format from that file.

The three-channel ImageNet stem is adapted to ``in_channels`` by :func:`adapt_stem_weight`: every
new input filter is the mean of the three RGB filters, scaled by ``3 / in_channels``. For an input in
which every channel carries the same image ``x``, the adapted convolution then gives exactly the
response of the original convolution to the grey RGB image ``(x, x, x)``, so the activations (and the
pretrained batch-norm statistics after them) keep their scale, and no channel is favoured.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tv_models
from torchvision.models.densenet import DenseNet
from torchvision.models.resnet import BasicBlock


class PretrainedWeightsUnavailable(FileNotFoundError):
    """Pretrained weights were asked for but no weights file is available (nothing is downloaded)."""


class WeightsFileError(ValueError):
    """A weights file exists but cannot be read or does not fit the architecture; names the file."""


@dataclass(frozen=True)
class ArchSpec:
    """What :func:`build_backbone` needs to know about one architecture.

    Attributes:
        family: ``"densenet"`` or ``"resnet"``.
        stem_key: state-dict key of the first convolution's weight, in torchvision's format.
        weights_name: name of the torchvision weights enum entry, or None if none exists.
    """

    family: str
    stem_key: str
    weights_name: str | None


ARCHITECTURES: dict[str, ArchSpec] = {
    "densenet161": ArchSpec("densenet", "features.conv0.weight", "DenseNet161_Weights.IMAGENET1K_V1"),
    "resnet50": ArchSpec("resnet", "conv1.weight", "ResNet50_Weights.IMAGENET1K_V2"),
    "resnet18": ArchSpec("resnet", "conv1.weight", "ResNet18_Weights.IMAGENET1K_V1"),
    "tiny_densenet": ArchSpec("densenet", "features.conv0.weight", None),
    "tiny_resnet": ArchSpec("resnet", "conv1.weight", None),
}

#: Layer configuration of ``tiny_densenet`` (kwargs of torchvision's ``DenseNet``).
TINY_DENSENET_CONFIG: dict = {"growth_rate": 12, "block_config": (2, 4, 6, 4), "num_init_features": 24, "bn_size": 4}
#: Stage widths and BasicBlocks per stage of ``tiny_resnet``.
TINY_RESNET_CONFIG: dict = {"widths": (16, 32, 64, 128), "blocks": (1, 1, 1, 1)}

# Old torchvision DenseNet checkpoints name dense-layer parameters 'norm.1.weight' etc.; the
# current modules are 'norm1.weight'. The pattern of torchvision.models.densenet._load_state_dict,
# extended to the batch-norm counters.
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def check_arch(arch: str) -> ArchSpec:
    """Return the spec of ``arch`` or raise a ValueError naming it and the known ones."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def _torchvision_model(arch: str, memory_efficient: bool) -> nn.Module:
    if arch == "densenet161":
        return tv_models.densenet161(weights=None, memory_efficient=memory_efficient)
    if arch == "tiny_densenet":
        return DenseNet(**TINY_DENSENET_CONFIG, memory_efficient=memory_efficient)
    if arch == "resnet50":
        return tv_models.resnet50(weights=None)
    if arch == "resnet18":
        return tv_models.resnet18(weights=None)
    if arch == "tiny_resnet":
        return _tiny_resnet(**TINY_RESNET_CONFIG)
    check_arch(arch)
    raise AssertionError(arch)  # unreachable: check_arch raised


def _tiny_resnet(widths: tuple[int, ...], blocks: tuple[int, ...]) -> nn.Module:
    """torchvision's ResNet with narrower stages: the same module names (``conv1``, ``layer1``...) and
    forward, so everything that handles a ResNet handles it."""
    model = tv_models.ResNet(BasicBlock, [1, 1, 1, 1])
    model.inplanes = widths[0]
    model.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(widths[0])
    for stage, (width, n_blocks) in enumerate(zip(widths, blocks)):
        setattr(model, f"layer{stage + 1}", model._make_layer(BasicBlock, width, n_blocks, stride=1 if stage == 0 else 2))
    model.fc = nn.Linear(widths[-1], 1000)
    for module in model.modules():  # torchvision's ResNet initialisation, for the replaced layers too
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


def pretrained_cache_path(arch: str) -> Path:
    """Where torchvision's cache would hold the ImageNet weights of ``arch``.

    Raises:
        PretrainedWeightsUnavailable: ``arch`` has no published ImageNet weights.
    """
    spec = check_arch(arch)
    if spec.weights_name is None:
        raise PretrainedWeightsUnavailable(
            f"architecture {arch!r} has no pretrained weights; use pretrained=False to train it from scratch"
        )
    url = tv_models.get_weight(spec.weights_name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def resolve_pretrained(arch: str, pretrained: bool | str | os.PathLike) -> Path | None:
    """Turn the ``pretrained`` argument into a weights file, or None for training from scratch.

    Args:
        arch: architecture name.
        pretrained: False (no weights), True (torchvision's cache; never downloads) or a path.

    Raises:
        PretrainedWeightsUnavailable: the file is not where it was looked for.
    """
    if pretrained is False or pretrained is None:
        return None
    if pretrained is True:
        path = pretrained_cache_path(arch)
        if not path.is_file():
            raise PretrainedWeightsUnavailable(
                f"ImageNet weights for {arch!r} not found: looked for {path} (torchvision's cache, "
                f"$TORCH_HOME/hub/checkpoints). rxlib never downloads weights; copy the file there, pass "
                f"pretrained=<path to a state dict>, or use pretrained=False to train from scratch."
            )
        return path
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise PretrainedWeightsUnavailable(
            f"pretrained weights file not found: {path}; use pretrained=False to train from scratch"
        )
    return path


def adapt_stem_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a stem convolution weight ``(out, 3, k, k)`` to ``in_channels`` inputs.

    Rule: every new input filter is the mean of the RGB filters times ``3 / in_channels``, i.e.
    ``new[:, c] = (3 / in_channels) * weight.mean(dim=1)`` for every ``c``. A constant-across-channels
    input then produces the same activations as the grey RGB image did with the original weights.

    Args:
        weight: the pretrained stem weight (any number of input channels is accepted; the mean is
            taken over all of them and the scale is ``weight.shape[1] / in_channels``).
        in_channels: number of input channels of the new stem.

    Returns:
        A new tensor of shape ``(out, in_channels, k, k)``; ``weight`` is not modified.
    """
    if weight.ndim != 4:
        raise ValueError(f"expected a 4-D convolution weight, got shape {tuple(weight.shape)}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be positive, got {in_channels}")
    old_channels = weight.shape[1]
    mean = weight.mean(dim=1, keepdim=True)
    return (mean * (old_channels / in_channels)).repeat(1, in_channels, 1, 1).contiguous()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict (optionally wrapped as ``{'state_dict': ...}`` or ``{'model': ...}``).

    Raises:
        WeightsFileError: the file cannot be read (truncated, not a torch file) or holds no tensors.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, pickle errors, EOFError ... for bad files
        raise WeightsFileError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(obj, Mapping):
        for wrapper in ("state_dict", "model"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsFileError(f"weights file {path} does not hold a state dict of tensors")
    return dict(obj)


def load_torchvision_weights(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], arch: str, in_channels: int, source: str = "<state dict>"
) -> None:
    """Load a torchvision-format state dict into a torchvision model whose stem has ``in_channels``.

    Old DenseNet keys are renamed, the stem is adapted with :func:`adapt_stem_weight` when its channel
    count differs, and the ImageNet classifier (``classifier.*`` / ``fc.*``) is dropped.

    Raises:
        WeightsFileError: keys or shapes do not fit ``arch`` (the message names ``source``).
    """
    spec = check_arch(arch)
    head_prefix = "classifier." if spec.family == "densenet" else "fc."
    converted: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        match = _OLD_DENSENET_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        if key.startswith("module."):  # saved from DataParallel
            key = key[len("module."):]
        if key.startswith(head_prefix):
            continue
        converted[key] = value
    stem = converted.get(spec.stem_key)
    if stem is None:
        raise WeightsFileError(f"{source}: no stem weight {spec.stem_key!r}; is this a {arch} state dict?")
    if stem.shape[1] != in_channels:
        converted[spec.stem_key] = adapt_stem_weight(stem, in_channels)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(head_prefix)}
    # Checkpoints saved before PyTorch 0.4.1 (as the published DenseNets were) lack the BN counters.
    missing = sorted(k for k in set(own) - set(converted) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(converted) - set(own))
    if missing or unexpected:
        raise WeightsFileError(
            f"{source} does not fit {arch}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    bad_shapes = [k for k in own if tuple(own[k].shape) != tuple(converted[k].shape)]
    if bad_shapes:
        k = bad_shapes[0]
        raise WeightsFileError(
            f"{source} does not fit {arch}: {len(bad_shapes)} shape mismatches, e.g. {k} is "
            f"{tuple(converted[k].shape)} in the file, {tuple(own[k].shape)} in the model"
        )
    model.load_state_dict(converted, strict=False)


def _replace_stem(model: nn.Module, family: str, in_channels: int) -> None:
    if family == "densenet":
        old = model.features.conv0
    else:
        old = model.conv1
    new = nn.Conv2d(
        in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride, padding=old.padding, bias=False
    )
    if family == "densenet":
        model.features.conv0 = new
    else:
        model.conv1 = new


def build_backbone(
    arch: str,
    *,
    pretrained: bool | str | os.PathLike = False,
    in_channels: int = 6,
    memory_efficient: bool = True,
) -> tuple[nn.Sequential, int]:
    """Build the convolutional part of ``arch`` for ``in_channels`` inputs.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        pretrained: False, True (torchvision's cache, never downloading) or a state-dict path.
        in_channels: number of image channels (6 for RxRx1).
        memory_efficient: DenseNets only: recompute the bottleneck in backward (checkpointing).

    Returns:
        ``(features, n_features)``: the named-stage ``nn.Sequential`` and its output channel count.

    Raises:
        ValueError: unknown ``arch``.
        PretrainedWeightsUnavailable: weights asked for but not found.
        WeightsFileError: the weights file is unreadable or does not fit.
    """
    spec = check_arch(arch)
    weights_path = resolve_pretrained(arch, pretrained)  # fail before building anything big
    model = _torchvision_model(arch, memory_efficient)
    _replace_stem(model, spec.family, in_channels)
    if weights_path is not None:
        load_torchvision_weights(model, read_state_dict(weights_path), arch, in_channels, source=str(weights_path))
    if spec.family == "densenet":
        features = model.features
        features.add_module("relu5", nn.ReLU(inplace=False))
        n_features = model.classifier.in_features
    else:
        features = nn.Sequential()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            features.add_module(name, getattr(model, name))
        n_features = model.fc.in_features
    return features, n_features
