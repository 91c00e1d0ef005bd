from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from rxlib.explain.cam import ClassTarget, LayerRecorder, grad_cam, minmax_normalise

CLASSES = [1, 4, 7]


def reference_cam(model, images, cell_type, layer, classes, head="logits", layer_resolution=False):
    """pytorch-grad-cam on the same model via model.as_classifier."""
    cam = GradCAM(model.as_classifier(cell_type, head=head), model.target_layers(layer))
    if layer_resolution:  # make its cv2.resize an identity: ask for the layer's own size
        with torch.no_grad():
            h, w = grad_cam(model, images, cell_type, classes, layer=layer).shape[-2:]
        cam.get_target_width_height = lambda _t: (w, h)
    try:
        return cam(images, [ClassifierOutputTarget(c) for c in classes])
    finally:
        cam.activations_and_grads.release()


@pytest.mark.parametrize("layer", ["denseblock4", "denseblock3.denselayer1", "transition2"])
def test_agrees_with_pytorch_grad_cam_upsampled(tiny_model, batch, layer):
    images, cell_type = batch
    ours = grad_cam(tiny_model, images, cell_type, CLASSES, layer=layer, upsample=True, normalise=True)
    ref = reference_cam(tiny_model, images, cell_type, layer, CLASSES)
    assert ours.shape == (3, 64, 64) and ref.shape == (3, 64, 64)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


def test_agrees_with_pytorch_grad_cam_at_layer_resolution(tiny_model, batch):
    images, cell_type = batch
    ours = grad_cam(tiny_model, images, cell_type, CLASSES, layer="denseblock4", normalise=True)
    ref = reference_cam(tiny_model, images, cell_type, "denseblock4", CLASSES, layer_resolution=True)
    assert ours.shape == ref.shape == (3, 2, 2)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


def test_arc_margin_head_agrees(tiny_model, batch):
    images, cell_type = batch
    ours = grad_cam(tiny_model, images, cell_type, [ClassTarget(c, "cosine") for c in CLASSES],
                    layer="denseblock3", upsample=True, normalise=True)
    ref = reference_cam(tiny_model, images, cell_type, "denseblock3", CLASSES, head="cosine")
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


def test_raw_maps_follow_equations_10_11(tiny_model, batch):
    images, cell_type = batch
    tiny_model.eval()
    acts = {}
    handle = tiny_model.layer("denseblock3").register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    try:
        out = tiny_model(images, cell_type)
        grads = torch.autograd.grad(out["logits"][torch.arange(3), CLASSES].sum(), acts["a"])[0]
    finally:
        handle.remove()
    expected = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * acts["a"]).sum(1))
    ours = grad_cam(tiny_model, images, cell_type, CLASSES, layer="denseblock3")
    torch.testing.assert_close(ours, expected.detach(), atol=1e-6, rtol=1e-5)


def test_cell_type_is_passed_through(tiny_model, batch):
    images, _ = batch
    images = images[:1].repeat(2, 1, 1, 1)
    _, scores = grad_cam(tiny_model, images, torch.eye(4)[[0, 2]], 3, layer="denseblock4", return_scores=True)
    assert not torch.allclose(scores[0], scores[1])


def test_hooks_removed_after_success_and_error(tiny_model, batch):
    images, cell_type = batch
    layer = tiny_model.layer("denseblock4")
    grad_cam(tiny_model, images, cell_type, 0, layer="denseblock4")
    assert len(layer._forward_hooks) == 0

    def failing_target(output):
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        grad_cam(tiny_model, images, cell_type, failing_target, layer="denseblock4")
    assert len(layer._forward_hooks) == 0
    with pytest.raises(ZeroDivisionError), LayerRecorder(layer, "denseblock4"):
        assert len(layer._forward_hooks) == 1
        raise ZeroDivisionError
    assert len(layer._forward_hooks) == 0


def test_does_not_modify_input_or_training_flag(tiny_model, batch):
    images, cell_type = batch
    before = images.clone()
    tiny_model.zero_grad(set_to_none=True)  # pytorch-grad-cam's backward in other tests filled .grad
    tiny_model.train()
    grad_cam(tiny_model, images, cell_type, CLASSES, layer="denseblock2", upsample=True, normalise=True)
    assert torch.equal(images, before) and not images.requires_grad
    assert tiny_model.training
    assert all(p.grad is None for p in tiny_model.parameters())
    tiny_model.eval()


def test_non_rgb_channel_counts():
    from rxlib.models import build_model

    for channels in (1, 9):  # 6 is every other test
        model = build_model("tiny_densenet", 5, in_channels=channels, embedding_dim=16)
        cam = grad_cam(model, torch.rand(2, channels, 64, 64), torch.eye(4)[:2], 2, layer="denseblock3",
                       upsample=True, normalise=True)
        assert cam.shape == (2, 64, 64)
        assert float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0


def test_hooks_on_recomputed_layers_fire_once(batch):
    """Memory-efficient dense layers are recomputed in backward; only the forward call is recorded."""
    from rxlib.models import build_model

    images, cell_type = batch
    torch.manual_seed(0)
    model = build_model("tiny_densenet", 10, embedding_dim=16, memory_efficient=True)
    cam = grad_cam(model, images, cell_type, 1, layer="denseblock2.denselayer1.conv1", eval_mode=False)
    assert cam.shape[0] == 3


def test_predicted_class_by_default(tiny_model, batch):
    images, cell_type = batch
    with torch.no_grad():
        predicted = tiny_model.eval()(images, cell_type)["logits"].argmax(1).tolist()
    torch.testing.assert_close(grad_cam(tiny_model, images, cell_type, layer="denseblock4"),
                               grad_cam(tiny_model, images, cell_type, predicted, layer="denseblock4"))


def test_minmax_normalise_range():
    x = torch.tensor([[[1.0, 3.0], [5.0, 2.0]]])
    out = minmax_normalise(x)
    assert float(out.min()) == 0.0 and abs(float(out.max()) - 1.0) < 1e-6


def test_errors_name_the_layer(tiny_model, batch):
    images, cell_type = batch
    with pytest.raises(KeyError, match="denseblock9"):
        grad_cam(tiny_model, images, cell_type, 0, layer="denseblock9")
    with pytest.raises(ValueError, match="neck.linear|images"):
        grad_cam(tiny_model, images[0], cell_type, 0)
    with pytest.raises(ValueError, match="targets"):
        grad_cam(tiny_model, images, cell_type, [0, 1], layer="denseblock4")
    with pytest.raises(IndexError, match="class 99"):
        grad_cam(tiny_model, images, cell_type, 99, layer="denseblock4")


def test_non_feature_map_layer_is_refused(tiny_model, batch):
    images, cell_type = batch
    with pytest.raises(ValueError, match="neck"):
        grad_cam(tiny_model, images, cell_type, 0, layer=tiny_model.neck)
