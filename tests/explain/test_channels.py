from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rxlib.explain.channels import (
    ChannelMixing,
    DCMixNet,
    build_dcmix_model,
    channel_importance_table,
    class_importance,
    eq15_attention,
    gradient_x_input,
    occlusion_importance,
    planted_importance,
)
from rxlib.explain.cam import grad_cam


def test_eq15_hand_made_example():
    cam = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    image = torch.stack([cam, 1 - cam, torch.zeros(2, 2)])  # distances 0, 2, 1
    printed = eq15_attention(cam, image, scale_channels=False)
    torch.testing.assert_close(printed, torch.tensor([0.0, 1.0, 0.5]))
    agreement = eq15_attention(cam, image, reading="agreement", scale_channels=False)  # 1 - d / 2
    torch.testing.assert_close(agreement, torch.tensor([1.0, 0.0, 0.5]))


def test_eq15_batched_scaling_and_errors():
    gen = torch.Generator().manual_seed(0)
    cam = torch.rand(2, 8, 8, generator=gen)
    images = torch.rand(2, 6, 8, 8, generator=gen) * 100
    images[:, 4] = 50 * cam + 3  # channel 5 = the CAM, up to scale and offset
    before = images.clone()
    # the rescaled reading (no longer the default) finds the channel whatever its scale and offset
    att = eq15_attention(cam, images, reading="agreement", scaling="rescaled")
    assert att.shape == (2, 6) and torch.equal(images, before)
    assert att.argmax(1).tolist() == [4, 4] and torch.allclose(att.max(1).values, torch.ones(2))
    assert eq15_attention(cam, images, scaling="rescaled").argmin(1).tolist() == [4, 4]  # printed form: smallest distance
    assert torch.equal(eq15_attention(cam, images, scale_channels=True), eq15_attention(cam, images, scaling="rescaled"))
    with pytest.raises(ValueError, match="upsample"):
        eq15_attention(cam[:, :4], images)
    with pytest.raises(ValueError, match="reading"):
        eq15_attention(cam, images, reading="inverse")
    with pytest.raises(ValueError, match="scaling"):
        eq15_attention(cam, images, scaling="zscore")


def test_eq15_literal_is_the_default():
    """Eq. 15 as printed: the distance to the channel values as given, no rescaling."""
    cam = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    image = torch.stack([10 * cam, torch.zeros(2, 2)])  # literal distances 9 and 1; rescaled 0 and 1
    torch.testing.assert_close(eq15_attention(cam, image), torch.tensor([1.0, 1 / 9]))
    assert torch.equal(eq15_attention(cam, image), eq15_attention(cam, image, scale_channels=False))
    torch.testing.assert_close(eq15_attention(cam, image, scaling="rescaled"), torch.tensor([0.0, 1.0]))
    # agreement 1 - d / 2 = -3.5 and 0.5, divided by the largest absolute value 3.5 (no clamp at 0)
    torch.testing.assert_close(eq15_attention(cam, image, reading="agreement"), torch.tensor([-1.0, 0.5 / 3.5]))


def test_occlusion_and_grad_x_input_recover_channel_3(channel3_model):
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(4, 6, 16, 16, generator=gen)
    before = images.clone()
    for fill in ("mean", "zero"):
        occ = occlusion_importance(channel3_model, images, None, 0, fill=fill)
        assert occ.shape == (4, 6) and occ.argmax(1).tolist() == [3] * 4
        assert torch.allclose(occ[:, [0, 1, 2, 4, 5]], torch.zeros(4, 5))
    gxi = gradient_x_input(channel3_model, images, None, 0)
    assert gxi.argmax(1).tolist() == [3] * 4
    assert torch.allclose(gxi[:, [0, 1, 2, 4, 5]], torch.zeros(4, 5))
    assert torch.equal(images, before) and not images.requires_grad


def test_occlusion_with_rxnet_and_predicted_class(tiny_model, batch):
    images, cell_type = batch
    occ = occlusion_importance(tiny_model, images, cell_type)
    gxi = gradient_x_input(tiny_model, images, cell_type, absolute=True)
    assert occ.shape == gxi.shape == (3, 6) and bool((gxi >= 0).all())


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


def test_importance_table_scores_a_perfect_and_a_reversed_method():
    planted = pd.DataFrame({"w1": [0.0, 0.0, 0.0], "w2": [1.0, 0.2, 0.0], "w3": [0.3, 1.0, 0.0]},
                           index=pd.Index([0, 1, 2], name="class_id"))
    labels = np.array([0, 0, 1, 1, 2])
    truth = planted.loc[labels].to_numpy()
    table = channel_importance_table({"perfect": truth + 0.01 * np.arange(3), "reversed": -truth}, labels, planted)
    row = table.set_index("method")
    assert row.loc["perfect", "n_classes"] == 2  # class 2 has no planted channel
    assert row.loc["perfect", "top1_agreement"] == 1.0 and row.loc["perfect", "spearman_mean"] > 0.9
    assert row.loc["reversed", "top1_agreement"] == 0.0 and row.loc["reversed", "spearman_mean"] < 0
    per_class = class_importance(truth, labels)
    assert list(per_class.index) == [0, 1, 2]
    with pytest.raises(ValueError, match="do not match"):
        class_importance(truth, labels[:3])


def test_planted_importance_reads_classes_csv():
    classes = pd.DataFrame({"class_id": [0, 1], "importance_w1": [0.0, 1.0], "importance_w2": [1.0, 0.0]})
    assert list(planted_importance(classes).columns) == ["w1", "w2"]
    with pytest.raises(ValueError, match="importance_w1"):
        planted_importance(classes.drop(columns=["importance_w1", "importance_w2"]))


def test_all_methods_on_the_channel3_model(channel3_model):
    from rxlib.explain import IMPORTANCE_METHODS, channel_importances

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(2, 6, 16, 16, generator=gen)
    result = channel_importances(channel3_model, images, None, 0, layer="features.1")
    assert list(result) == list(IMPORTANCE_METHODS)
    assert all(v.shape == (2, 6) for v in result.values())
    for method in ("occlusion_mean", "occlusion_zero", "grad_x_input"):
        assert result[method].argmax(1).tolist() == [3, 3]
    # the CAM of this model is relu(channel 3): the agreement reading finds it, the printed one ranks it last
    assert result["eq15_agreement"].argmax(1).tolist() == [3, 3]
    assert result["eq15_printed"].argmin(1).tolist() == [3, 3]
    with pytest.raises(ValueError, match="unknown methods"):
        channel_importances(channel3_model, images, None, 0, methods=["saliency"])
