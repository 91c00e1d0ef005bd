"""Shapes, heads and layer access of RxNet (tiny_densenet on 6-channel 64x64 images)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rxlib.config import CELL_TYPES, N_CHANNELS, N_CLASSES_RXRX1
from rxlib.models import (
    CellTypeClassifier,
    build_model,
    count_parameters,
    dense_layer_1x1_weights,
    parameter_breakdown,
)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("tiny_densenet", N_CLASSES_RXRX1).eval()


def _batch(b: int = 3, size: int = 64):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(b, N_CHANNELS, size, size, generator=g)
    cell_type = F.one_hot(torch.arange(b) % len(CELL_TYPES), len(CELL_TYPES)).float()
    return images, cell_type


def test_output_shapes_and_ranges(tiny):
    images, cell_type = _batch()
    with torch.no_grad():
        out = tiny(images, cell_type)
    assert set(out) == {"embedding", "logits", "cosine"}
    assert out["embedding"].shape == (3, 1024)
    assert out["logits"].shape == (3, N_CLASSES_RXRX1)
    assert out["cosine"].shape == (3, N_CLASSES_RXRX1)
    assert out["cosine"].min() >= -1 and out["cosine"].max() <= 1


def test_heads_follow_their_definitions(tiny):
    images, cell_type = _batch()
    with torch.no_grad():
        out = tiny(images, cell_type)
        emb = out["embedding"]
        w, b = tiny.softmax_head.weight, tiny.softmax_head.bias
        torch.testing.assert_close(out["logits"], emb @ w.T + b)
        t = tiny.arc_templates
        expected = (emb / emb.norm(dim=1, keepdim=True)) @ (t / t.norm(dim=1, keepdim=True)).T
        torch.testing.assert_close(out["cosine"], expected, atol=1e-5, rtol=1e-5)


def test_cell_type_changes_the_embedding(tiny):
    images, _ = _batch(2)
    with torch.no_grad():
        a = tiny(images, torch.eye(4)[[0, 0]])["embedding"]
        b = tiny(images, torch.eye(4)[[3, 3]])["embedding"]
    assert not torch.allclose(a, b)


def test_empty_classes_have_templates():
    model = build_model("tiny_densenet", 7, embedding_dim=16)
    assert model.softmax_head.weight.shape == (7, 16)
    assert model.arc_templates.shape == (7, 16)
    images, cell_type = _batch(2, 32)
    out = model(images, cell_type)  # training mode, batch of 2
    loss = out["logits"][:, 6].sum() + out["cosine"][:, 6].sum()
    loss.backward()
    assert model.arc_templates.grad[6].abs().sum() > 0


def test_non_default_channels_and_rgb():
    model = build_model("tiny_densenet", 5, in_channels=3, n_cell_types=0, embedding_dim=8).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32), torch.zeros(2, 0))
    assert out["logits"].shape == (2, 5)


def test_bad_inputs_are_named(tiny):
    images, cell_type = _batch()
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\).*\(3, 3, 64, 64\)"):
        tiny(images[:, :3], cell_type)
    with pytest.raises(ValueError, match=r"cell_type.*\(3, 3\)"):
        tiny(images, cell_type[:, :3])
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        build_model("vgg", 3)


def test_input_is_not_modified(tiny):
    images, cell_type = _batch()
    before = images.clone()
    with torch.no_grad():
        tiny(images, cell_type)
    torch.testing.assert_close(images, before, rtol=0, atol=0)


def test_layers_for_grad_cam(tiny):
    assert tiny.target_layers() == [tiny.features.denseblock4]
    assert tiny.target_layers("last") == [tiny.features.denseblock4.denselayer4]
    assert tiny.layer("denseblock1.denselayer2.conv1") is tiny.features.denseblock1.denselayer2.conv1
    with pytest.raises(KeyError, match="denseblock9"):
        tiny.layer("denseblock9")
    assert list(tiny.stages())[0] == "conv0" and list(tiny.stages())[-1] == "denseblock4"


def test_as_classifier_matches_forward(tiny):
    images, _ = _batch(2)
    onehot = torch.eye(4)[2]
    view = tiny.as_classifier(onehot, head="cosine")
    assert isinstance(view, CellTypeClassifier)
    with torch.no_grad():
        torch.testing.assert_close(view(images), tiny(images, onehot.expand(2, -1))["cosine"])


def test_parameter_counts(tiny):
    table = parameter_breakdown(tiny).set_index("part")["parameters"]
    assert table["total"] == count_parameters(tiny)
    assert 100_000 < table["features"] < 300_000  # tiny: ~0.15 M in the backbone
    assert count_parameters(tiny, trainable_only=True) == count_parameters(tiny)


def test_dense_layer_1x1_weights(tiny):
    w = dense_layer_1x1_weights(tiny, 1, 2)
    conv = tiny.features.denseblock1.denselayer2.conv1
    assert w.shape == (conv.out_channels, conv.in_channels)
    torch.testing.assert_close(w, conv.weight[:, :, 0, 0])
    with pytest.raises(ValueError, match="layer must be in 1..2"):
        dense_layer_1x1_weights(tiny, 1, 6)
    resnet = build_model("resnet18", 3, embedding_dim=8)
    with pytest.raises(ValueError, match="DenseNets"):
        dense_layer_1x1_weights(resnet, 1, 1)


def test_resnet_shapes():
    model = build_model("resnet18", 11, embedding_dim=32).eval()
    images, cell_type = _batch(2, 64)
    with torch.no_grad():
        out = model(images, cell_type)
    assert out["embedding"].shape == (2, 32) and out["cosine"].shape == (2, 11)
    assert model.target_layers() == [model.features.layer4]
