"""Tiny networks for the explain tests: a tiny RxNet, a ResNet-18 RxNet and a hand-built model that reads only channel 3."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rxlib.models import build_model


class Channel3Model(nn.Module):
    """Logit 0 = mean(relu(channel 3)), logit 1 = its negative; nothing else reaches the output."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(6, 4, 1, bias=False), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].weight[:, 3] = 1.0
        self.in_channels = 6

    def forward(self, images: torch.Tensor, cell_type: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        pooled = self.features(images).mean(dim=(1, 2, 3))
        logits = torch.stack([pooled, -pooled], dim=1)
        return {"logits": logits, "cosine": torch.tanh(logits)}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors run fastest on one thread, and a shared 2-core machine is not oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("tiny_densenet", 10, embedding_dim=32)


@pytest.fixture(scope="module")
def resnet_model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", 10, embedding_dim=32)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(3, 6, 64, 64, generator=gen)
    cell_type = torch.eye(4)[[0, 1, 3]]
    return images, cell_type


@pytest.fixture
def channel3_model() -> nn.Module:
    return Channel3Model()
