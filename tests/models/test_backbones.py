"""Stem adaptation, pretrained-weight loading from files and the error when weights are absent."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.densenet import DenseNet

from rxlib.models import PretrainedWeightsUnavailable, WeightsFileError, adapt_stem_weight, build_model
from rxlib.models.backbones import TINY_DENSENET_CONFIG, pretrained_cache_path


def test_stem_rule_is_scaled_mean():
    w = torch.randn(5, 3, 7, 7)
    before = w.clone()
    new = adapt_stem_weight(w, 6)
    assert new.shape == (5, 6, 7, 7)
    for c in range(6):
        torch.testing.assert_close(new[:, c], w.mean(dim=1) * 3 / 6)
    torch.testing.assert_close(w, before, rtol=0, atol=0)


def test_stem_rule_keeps_activation_scale():
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, 7, 7, generator=generator, dtype=torch.float64)   # float64: compare the rule, not rounding
    grey = torch.rand(1, 1, 32, 32, generator=generator, dtype=torch.float64)
    rgb_response = F.conv2d(grey.expand(1, 3, -1, -1), w, stride=2, padding=3)
    six_response = F.conv2d(grey.expand(1, 6, -1, -1), adapt_stem_weight(w, 6), stride=2, padding=3)
    torch.testing.assert_close(six_response, rgb_response, atol=1e-12, rtol=1e-12)


def _fake_tiny_torchvision_state(tmp_path, old_keys: bool = False):
    torch.manual_seed(3)
    reference = DenseNet(**TINY_DENSENET_CONFIG, num_classes=1000)  # RGB stem, ImageNet classifier
    state = reference.state_dict()
    if old_keys:  # the 'norm.1.weight' naming of the published DenseNet checkpoints
        state = {k.replace("norm1.", "norm.1.").replace("conv1.", "conv.1.") if "denselayer" in k else k: v
                 for k, v in state.items()}
    path = tmp_path / "fake_imagenet.pth"
    torch.save(state, path)
    return reference, path


@pytest.mark.parametrize("old_keys", [False, True])
def test_pretrained_from_file_adapts_stem(tmp_path, old_keys):
    reference, path = _fake_tiny_torchvision_state(tmp_path, old_keys)
    model = build_model("tiny_densenet", 9, pretrained=path, embedding_dim=8)
    rgb_stem = reference.features.conv0.weight
    torch.testing.assert_close(model.features.conv0.weight, adapt_stem_weight(rgb_stem, 6))
    torch.testing.assert_close(
        model.features.denseblock2.denselayer3.conv1.weight, reference.features.denseblock2.denselayer3.conv1.weight
    )
    torch.testing.assert_close(model.features.norm5.running_var, reference.features.norm5.running_var)


def test_pretrained_true_missing_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = pretrained_cache_path("densenet161")
    assert expected.parent == tmp_path / "hub" / "checkpoints"
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        build_model("densenet161", 1139, pretrained=True)
    message = str(info.value)
    assert str(expected) in message and "pretrained=False" in message and "densenet161" in message


def test_pretrained_true_reads_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from torchvision.models import resnet18

    torch.manual_seed(4)
    reference = resnet18()
    path = pretrained_cache_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", 3, pretrained=True, embedding_dim=8)
    torch.testing.assert_close(model.features.conv1.weight, adapt_stem_weight(reference.conv1.weight, 6))
    torch.testing.assert_close(model.features.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_tiny_has_no_pretrained_weights():
    with pytest.raises(PretrainedWeightsUnavailable, match="pretrained=False"):
        build_model("tiny_densenet", 3, pretrained=True)


def test_missing_and_bad_weights_files(tmp_path):
    with pytest.raises(PretrainedWeightsUnavailable, match="nowhere.pth"):
        build_model("tiny_densenet", 3, pretrained=tmp_path / "nowhere.pth")
    _, path = _fake_tiny_torchvision_state(tmp_path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsFileError, match="truncated.pth"):
        build_model("tiny_densenet", 3, pretrained=truncated)
    with pytest.raises(WeightsFileError, match="does not fit resnet18|no stem weight"):
        build_model("resnet18", 3, pretrained=path)


def test_tiny_resnet_is_a_resnet_of_the_tiny_densenets_size():
    """The smoke profile's comparison backbone: ResNet stage names and forward, six input channels,
    and a parameter count of the same order as tiny_densenet's (not ResNet-18's 11 M)."""
    resnet = build_model("tiny_resnet", 5, embedding_dim=8)
    densenet = build_model("tiny_densenet", 5, embedding_dim=8)
    names = [n for n, _ in resnet.features.named_children()]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"] and "layer4" in names
    assert resnet.features.conv1.in_channels == 6
    size = sum(p.numel() for p in resnet.features.parameters())
    assert size < 4 * sum(p.numel() for p in densenet.features.parameters())
    out = resnet(torch.randn(2, 6, 64, 64), torch.eye(4)[:2])
    assert out["logits"].shape == (2, 5) and torch.isfinite(out["logits"]).all()
    with pytest.raises(PretrainedWeightsUnavailable):
        build_model("tiny_resnet", 5, pretrained=True)
