"""The DCMIX channel-mixing layer: a convex combination of the channels, learning the informative one,
and wrapping an RxNet so that Grad-CAM still reaches its layers. (Per-class DCMIX training on a
synthetic data set: tests/explain/test_sites_cheating_dcmix.py.)"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rxlib.explain import grad_cam
from rxlib.explain.dcmix import ChannelMixing, DCMixNet, build_dcmix_model


def test_mixing_weights_are_a_convex_combination():
    mix = ChannelMixing(6, 3)
    with torch.no_grad():
        mix.logits.normal_(0, 5)
    w = mix.weights()
    assert bool((w >= 0).all()) and torch.allclose(w.sum(1), torch.ones(3))
    torch.testing.assert_close(mix.importance().sum(), torch.tensor(1.0))
    x = torch.rand(2, 6, 4, 4)
    torch.testing.assert_close(mix(x)[:, 0], (w[0][None, :, None, None] * x).sum(1))
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\)"):
        mix(torch.rand(2, 5, 4, 4))


class TinyOneChannelNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.in_channels = 1
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_dcmix_learns_the_informative_channel():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n = 256
    labels = torch.randint(0, 2, (n,), generator=gen)
    # every channel has a large random per-image offset; only channel 2 also carries the class
    images = torch.randn(n, 6, 8, 8, generator=gen) + 3 * torch.randn(n, 6, 1, 1, generator=gen)
    images[:, 2] = torch.randn(n, 8, 8, generator=gen) * 0.5 + (2.0 * labels - 1.0)[:, None, None] * 2
    net = DCMixNet(TinyOneChannelNet())
    optimiser = torch.optim.Adam(net.parameters(), lr=0.1)
    for step in range(60):
        idx = torch.randint(0, n, (32,), generator=gen)
        loss = nn.functional.cross_entropy(net(images[idx]), labels[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        w = net.mix.weights()
        assert bool((w >= 0).all()) and torch.allclose(w.sum(1), torch.ones(1))
    importance = net.channel_importance()
    assert int(importance.argmax()) == 2 and float(importance[2]) > 0.5


def test_dcmix_wraps_rxnet_for_grad_cam(batch):
    images, cell_type = batch
    torch.manual_seed(0)
    net = build_dcmix_model("tiny_densenet", 5, n_mixtures=2, embedding_dim=16)
    out = net(images, cell_type)
    assert out["logits"].shape == (3, 5) and net.channel_importance().shape == (6,)
    assert grad_cam(net, images, cell_type, 1, layer="denseblock4", upsample=True).shape == (3, 64, 64)
