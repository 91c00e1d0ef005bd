"""The CAM family over one base: every member against pytorch-grad-cam, on a DenseNet and a ResNet RxNet."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from rxlib.explain import CAM_METHODS, channel_importances, eq15_attention, grad_cam, grad_cam_plus_plus, layer_cam
from rxlib.explain.cam import default_layer, layer_gradient, resolve_layer
from rxlib.explain.cam.gradcampp import grad_cam_plus_plus_map
from rxlib.explain.cam.layercam import layer_cam_map
from rxlib.explain.dcmix import build_dcmix_model

CLASSES = [1, 4, 7]
#: rxlib member -> the pytorch-grad-cam class computing the same maps.
REFERENCES = [(grad_cam, GradCAM), (grad_cam_plus_plus, GradCAMPlusPlus), (layer_cam, LayerCAM)]
MEMBER_IDS = ["gradcam", "gradcampp", "layercam"]
#: (model fixture, the architecture's default layer written out, a layer inside the network)
ARCHS = [("tiny_model", "denseblock4", "denseblock3.denselayer1"), ("resnet_model", "layer4", "layer3")]


def reference_cam(cls, model, images, cell_type, layer, classes, size=None):
    """pytorch-grad-cam on the same model (``model(x)`` only: the cell type is fixed by as_classifier)."""
    with cls(model.as_classifier(cell_type), model.target_layers(layer)) as cam:
        if size is not None:  # make its cv2.resize an identity: ask for the layer's own size
            cam.get_target_width_height = lambda _t: (size[1], size[0])
        return cam(images, [ClassifierOutputTarget(c) for c in classes])


@pytest.mark.parametrize(("member", "reference"), REFERENCES, ids=MEMBER_IDS)
@pytest.mark.parametrize(("fixture", "default", "inner"), ARCHS, ids=["densenet", "resnet"])
def test_members_agree_with_pytorch_grad_cam(request, batch, member, reference, fixture, default, inner):
    model = request.getfixturevalue(fixture)
    images, cell_type = batch
    for ours_layer, their_layer in ((None, default), (inner, inner)):
        ours = member(model, images, cell_type, CLASSES, layer=ours_layer, upsample=True, normalise=True)
        ref = reference_cam(reference, model, images, cell_type, their_layer, CLASSES)
        assert ours.shape == ref.shape == (3, 64, 64)
        np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5, err_msg=f"layer {their_layer}")


@pytest.mark.parametrize(("member", "reference"), REFERENCES, ids=MEMBER_IDS)
@pytest.mark.parametrize(("fixture", "layer"), [("tiny_model", "denseblock3"), ("resnet_model", "layer3")],
                         ids=["densenet", "resnet"])
def test_members_agree_at_layer_resolution(request, batch, member, reference, fixture, layer):
    model = request.getfixturevalue(fixture)
    images, cell_type = batch
    ours = member(model, images, cell_type, CLASSES, layer=layer, normalise=True)
    ref = reference_cam(reference, model, images, cell_type, layer, CLASSES, size=tuple(ours.shape[-2:]))
    assert ours.shape == ref.shape == (3, 4, 4)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


def test_member_maps_on_hand_made_tensors():
    activation = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # (1, 2, 1, 2)
    gradient = torch.tensor([[[[0.5, -1.0]], [[0.0, 2.0]]]])
    # LayerCAM: sum_k relu(g) * A = [0.5 * 1 + 0, 0 + 2 * -1]
    torch.testing.assert_close(layer_cam_map(activation, gradient), torch.tensor([[[0.5, -2.0]]]))
    # Grad-CAM++: alpha = g^2 / (2 g^2 + sum(A) g^3 + 1e-6), 0 where g = 0; w = sum relu(g) alpha
    a1 = 0.25 / (0.5 + 3.0 * 0.125 + 1e-6)
    a2 = 4.0 / (8.0 + 2.0 * 8.0 + 1e-6)
    w = torch.tensor([0.5 * a1, 2.0 * a2])
    expected = (w[:, None, None] * activation[0]).sum(0)[None]
    torch.testing.assert_close(grad_cam_plus_plus_map(activation, gradient), expected)


@pytest.mark.parametrize("member", list(CAM_METHODS.values()), ids=list(CAM_METHODS))
def test_default_layer_works_for_resnet_and_densenet(tiny_model, resnet_model, batch, member):
    images, cell_type = batch
    for model, name in ((tiny_model, "denseblock4"), (resnet_model, "layer4")):
        assert default_layer(model) == name
        torch.testing.assert_close(member(model, images, cell_type, CLASSES),
                                   member(model, images, cell_type, CLASSES, layer=name))


def test_default_layer_in_one_place(tiny_model, resnet_model):
    assert default_layer(tiny_model, last=True) == "denseblock4.denselayer4"
    assert default_layer(resnet_model, last=True) == "layer4.1"
    assert resolve_layer(resnet_model) == ("layer4", resnet_model.features.layer4)
    assert resolve_layer(resnet_model.as_classifier(torch.eye(4)[0]))[0] == "layer4"
    torch.manual_seed(0)
    dcmix = build_dcmix_model("resnet18", 5, n_mixtures=1, embedding_dim=16)
    assert resolve_layer(dcmix) == ("layer4", dcmix.inner.features.layer4)
    with pytest.raises(ValueError, match="no default CAM layer"):
        default_layer(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)))


@pytest.mark.parametrize("fixture", ["tiny_model", "resnet_model"])
def test_layer_errors_are_one_clear_line(request, batch, fixture):
    model = request.getfixturevalue(fixture)
    images, cell_type = batch
    with pytest.raises(KeyError) as found:
        grad_cam(model, images, cell_type, 0, layer="denseblock9")
    message = found.value.args[0]
    assert "denseblock9" in message and "top-level layers" in message and "\n" not in message
    with pytest.raises(ValueError) as found:
        grad_cam(torch.nn.Sequential(torch.nn.Conv2d(6, 2, 1)), images, None, 0)
    assert "layer=" in str(found.value) and "\n" not in str(found.value)


def test_resnet_block_output_is_recorded_before_the_in_place_residual_add(resnet_model, batch):
    """``bn2`` of a BasicBlock is followed by ``out += identity`` and ``ReLU(inplace=True)``: the recorder
    keeps bn2's own output and its gradient, checked against the block's tail written out without
    in-place operations. (pytorch-grad-cam's tensor hook sees the tensor after those operations and
    gives other maps at such a layer; at block outputs, which the tests above use, the two agree.)"""
    images, cell_type = batch
    resnet_model.eval()  # the written-out tail below uses the running statistics, as layer_gradient does
    block = resnet_model.features.layer4[1]  # the last block: pooling, neck and head follow
    inputs = {}
    handle = block.register_forward_pre_hook(lambda m, args: inputs.setdefault("x", args[0]))
    try:
        found = layer_gradient(resnet_model, images, cell_type, CLASSES, layer="layer4.1.bn2")
    finally:
        handle.remove()
    x = inputs["x"].detach()
    with torch.no_grad():
        bn2 = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    bn2.requires_grad_(True)
    pooled = torch.flatten(resnet_model.pool(torch.relu(bn2 + x)), 1)
    logits = resnet_model.softmax_head(resnet_model.neck(torch.cat([pooled, cell_type], dim=1)))
    (gradient,) = torch.autograd.grad(logits[torch.arange(3), CLASSES].sum(), bn2)
    torch.testing.assert_close(found.activation, bn2.detach())
    torch.testing.assert_close(found.gradient, gradient)
    torch.testing.assert_close(found.scores, logits[torch.arange(3), CLASSES].detach())  # the hook changes nothing


@pytest.mark.parametrize("fixture", ["tiny_model", "resnet_model"])
def test_channel_attention_uses_the_default_layer(request, batch, fixture):
    model = request.getfixturevalue(fixture)
    images, cell_type = batch
    found = channel_importances(model, images, cell_type, CLASSES, methods=("eq15_printed", "grad_x_input"))
    cam = grad_cam(model, images, cell_type, CLASSES, layer=default_layer(model), upsample=True, normalise=True)
    torch.testing.assert_close(found["eq15_printed"], eq15_attention(cam, images))
    assert found["grad_x_input"].shape == (3, 6)


def test_graph_starts_at_the_layer_and_grad_mode_is_restored(tiny_model, batch):
    """The network before the layer runs without a graph; frozen parameters do not matter; the caller's
    grad mode comes back, also after an error."""
    images, cell_type = batch
    expected = grad_cam(tiny_model, images, cell_type, CLASSES, layer="denseblock3")
    with torch.no_grad():
        torch.testing.assert_close(grad_cam(tiny_model, images, cell_type, CLASSES, layer="denseblock3"), expected)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    frozen = [p for p in tiny_model.parameters() if p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(False)
        torch.testing.assert_close(grad_cam(tiny_model, images, cell_type, CLASSES, layer="denseblock3"), expected)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    with pytest.raises(IndexError, match="class 99"):
        layer_cam(tiny_model, images, cell_type, 99, layer="denseblock3")
    assert torch.is_grad_enabled()
