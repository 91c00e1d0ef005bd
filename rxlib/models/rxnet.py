"""The network of Sharma & Krishnamurthi (2022), section 4.2-4.3: backbone, cell type, embedding, two heads.

::

    images (B, 6, H, W) --features--> (B, F, h, w) --adaptive avg pool--> (B, F)
    concat with the cell-type one-hot (B, 4)                            -> (B, F + 4)   # 2212 for DenseNet-161
    neck: Linear(F + 4, 1024) -> BatchNorm1d(1024) -> PReLU(1024)       -> embedding (B, 1024)
    softmax head: embedding @ W.T + b                                   -> logits  (B, n_classes)
    arc-margin head: normalise(embedding) @ normalise(T).T              -> cosine  (B, n_classes), in [-1, 1]

The paper names the 1024-d embedding and the 2212-d concatenation but not the layers between them; the
neck here is one Linear + BatchNorm1d + PReLU (a per-channel learnt slope: unlike a ReLU it does not
confine the embedding to the positive orthant, which would waste half of the angular space that the
arc-margin head works in). The two heads have separate templates, as the paper's Figures 7-8 show:
``softmax_head.weight`` (W, with bias) and ``arc_templates`` (no bias; only their direction matters).

``n_classes`` is the full label space (1139 for RxRx1), so classes without any training sample still
have templates (the paper's "junk classes").
"""
from __future__ import annotations

import os
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from rxlib.models.backbones import ARCHITECTURES, build_backbone, check_arch

#: Layer (dotted path inside ``model.features``) that Grad-CAM hooks by default: the output of the
#: last dense block (2208 x 16 x 16 for DenseNet-161 at 512 x 512) or the last ResNet stage.
DEFAULT_TARGET_LAYER: dict[str, str] = {"densenet": "denseblock4", "resnet": "layer4"}

#: Children of ``features`` that are the stages of the paper's Table 2 (and their ResNet analogues).
STAGE_NAMES: dict[str, tuple[str, ...]] = {
    "densenet": (
        "conv0", "pool0", "denseblock1", "transition1", "denseblock2", "transition2",
        "denseblock3", "transition3", "denseblock4",
    ),
    "resnet": ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4"),
}


class RxNet(nn.Module):
    """Backbone + cell type + 1024-d embedding + softmax and arc-margin heads.

    Build it with :func:`build_model`. ``forward(images, cell_type)`` returns a dict with
    ``embedding`` (B, embedding_dim), ``logits`` (B, n_classes) and ``cosine`` (B, n_classes).

    Attributes:
        arch: architecture name.
        features: the convolutional backbone, an ``nn.Sequential`` of named stages.
        neck: Linear + BatchNorm1d + PReLU from ``n_features + n_cell_types`` to ``embedding_dim``.
        softmax_head: ``nn.Linear(embedding_dim, n_classes)``; its weight rows are the softmax templates.
        arc_templates: ``(n_classes, embedding_dim)`` parameter; the arc-margin templates.
    """

    def __init__(
        self,
        arch: str,
        features: nn.Sequential,
        n_features: int,
        n_classes: int,
        *,
        in_channels: int = 6,
        n_cell_types: int = 4,
        embedding_dim: int = 1024,
    ) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be positive, got {n_classes}")
        if n_cell_types < 0:
            raise ValueError(f"n_cell_types must be >= 0, got {n_cell_types}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        self.arch = arch
        self.family = ARCHITECTURES[arch].family
        self.in_channels = in_channels
        self.n_features = n_features
        self.n_cell_types = n_cell_types
        self.n_classes = n_classes
        self.embedding_dim = embedding_dim
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = nn.Sequential(
            OrderedDict(
                linear=nn.Linear(n_features + n_cell_types, embedding_dim),
                bn=nn.BatchNorm1d(embedding_dim),
                act=nn.PReLU(embedding_dim),
            )
        )
        self.softmax_head = nn.Linear(embedding_dim, n_classes)
        self.arc_templates = nn.Parameter(torch.empty(n_classes, embedding_dim))
        nn.init.xavier_uniform_(self.arc_templates)

    def forward(self, images: torch.Tensor, cell_type: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the network.

        Args:
            images: ``(B, in_channels, H, W)`` float tensor.
            cell_type: ``(B, n_cell_types)`` one-hot float tensor (see ``rxlib.config.CELL_TYPES``).

        Returns:
            ``{'embedding': (B, D), 'logits': (B, K), 'cosine': (B, K)}``.

        Raises:
            ValueError: wrong image channel count or cell-type shape.
        """
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images of shape (B, {self.in_channels}, H, W), got {tuple(images.shape)}"
            )
        if cell_type.shape != (images.shape[0], self.n_cell_types):
            raise ValueError(
                f"expected cell_type of shape ({images.shape[0]}, {self.n_cell_types}), got {tuple(cell_type.shape)}"
            )
        pooled = torch.flatten(self.pool(self.features(images)), 1)
        combined = torch.cat([pooled, cell_type.to(pooled.dtype)], dim=1)
        embedding = self.neck(combined)
        logits = self.softmax_head(embedding)
        cosine = F.linear(F.normalize(embedding, dim=1), F.normalize(self.arc_templates, dim=1))
        return {"embedding": embedding, "logits": logits, "cosine": cosine.clamp(-1.0, 1.0)}

    # --- layers for hooks (Grad-CAM, Table 2, Figure 10) -------------------------------------------

    def stages(self) -> "OrderedDict[str, nn.Module]":
        """The named stages of the backbone in order (Table 2 rows for DenseNets)."""
        return OrderedDict((name, getattr(self.features, name)) for name in STAGE_NAMES[self.family])

    def layer(self, name: str) -> nn.Module:
        """A module of the backbone by dotted path inside ``features``, e.g. ``'denseblock4.denselayer24'``.

        Raises:
            KeyError: no such layer (the message lists the top-level names).
        """
        try:
            return self.features.get_submodule(name)
        except AttributeError as exc:
            top = [n for n, _ in self.features.named_children()]
            raise KeyError(f"{self.arch} has no layer {name!r} in features; top-level layers: {top}") from exc

    def target_layers(self, name: str | None = None) -> list[nn.Module]:
        """Layers for Grad-CAM, as the list pytorch-grad-cam expects.

        Args:
            name: dotted path inside ``features``; ``'last'`` for the last layer of the last block
                (``denseblock4.denselayer24`` in DenseNet-161, the last Bottleneck in a ResNet);
                default :data:`DEFAULT_TARGET_LAYER` (output of ``denseblock4`` / ``layer4``).

        Note:
            In a memory-efficient DenseNet the bottleneck (``norm1``/``relu1``/``conv1`` of each dense
            layer) is recomputed during the backward pass, so hooks on those sub-modules fire twice;
            hooks on whole dense layers, blocks or transitions fire once. Build the model with
            ``memory_efficient=False`` to hook the bottleneck itself.
        """
        if name is None:
            name = DEFAULT_TARGET_LAYER[self.family]
        if name == "last":
            block = self.layer(STAGE_NAMES[self.family][-1])
            return [list(block.children())[-1]]
        return [self.layer(name)]

    def as_classifier(self, cell_type: torch.Tensor, head: str = "logits") -> "CellTypeClassifier":
        """A view ``images -> scores`` with the cell type fixed, for tools that call ``model(x)``."""
        return CellTypeClassifier(self, cell_type, head)


class CellTypeClassifier(nn.Module):
    """Wrap an :class:`RxNet` as ``images -> one head's scores`` for a fixed cell type.

    Grad-CAM libraries call ``model(images)``; this view supplies the cell-type one-hot (shape
    ``(n_cell_types,)`` for all images, or ``(B, n_cell_types)``) and picks ``head`` from the output
    dict (``'logits'``, ``'cosine'`` or ``'embedding'``). It shares the wrapped model's parameters.
    """

    def __init__(self, model: RxNet, cell_type: torch.Tensor, head: str = "logits") -> None:
        super().__init__()
        if head not in ("logits", "cosine", "embedding"):
            raise ValueError(f"head must be 'logits', 'cosine' or 'embedding', got {head!r}")
        self.model = model
        self.head = head
        self.register_buffer("cell_type", torch.as_tensor(cell_type, dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cell_type = self.cell_type
        if cell_type.ndim == 1:
            cell_type = cell_type.expand(images.shape[0], -1)
        return self.model(images, cell_type.to(images.device))[self.head]


def build_model(
    arch: str,
    n_classes: int,
    *,
    pretrained: bool | str | os.PathLike = False,
    in_channels: int = 6,
    n_cell_types: int = 4,
    embedding_dim: int = 1024,
    memory_efficient: bool = True,
) -> RxNet:
    """Build the paper's network on one of the backbones.

    Args:
        arch: ``'densenet161'`` (the paper's), ``'resnet50'``, ``'resnet18'`` or ``'tiny_densenet'``.
        n_classes: size of the label space, including classes without samples (1139 for RxRx1).
        pretrained: False (from scratch), True (ImageNet weights from torchvision's cache; never
            downloads) or the path of a torchvision-format state dict. The 3-channel stem is adapted
            to ``in_channels`` (see :func:`rxlib.models.backbones.adapt_stem_weight`).
        in_channels: image channels (6 for RxRx1).
        n_cell_types: length of the cell-type one-hot (4 for RxRx1; 0 to leave it out).
        embedding_dim: size of the embedding both heads act on (1024 in the paper).
        memory_efficient: DenseNets only: torchvision's checkpointed dense layers.

    Returns:
        An :class:`RxNet` in training mode.

    Raises:
        ValueError: unknown ``arch`` or bad sizes.
        PretrainedWeightsUnavailable: weights asked for but absent.
        WeightsFileError: weights file unreadable or not fitting.
    """
    check_arch(arch)
    features, n_features = build_backbone(
        arch, pretrained=pretrained, in_channels=in_channels, memory_efficient=memory_efficient
    )
    return RxNet(
        arch, features, n_features, n_classes,
        in_channels=in_channels, n_cell_types=n_cell_types, embedding_dim=embedding_dim,
    )
