"""rxlib.explain.explorer without a browser: the PNG core, the cache, the widget's controls, bad input."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from rxlib.explain.explorer import (
    COMPOSITE,
    ExplorerCache,
    default_explorer_layers,
    explorer_cam,
    explorer_channels,
    gradcam_explorer,
    overlay_png,
    render_explorer_png,
)
from rxlib.explain.cam import grad_cam

pytest.importorskip("ipywidgets")

# Classes 3 and 5 of the seeded random network have CAMs that are not zero everywhere at every layer
# (for some classes no feature map has positive weight and the ReLU of eq. 11 leaves nothing).
BASE = {"class_id": 3, "cell_type": "HEPG2", "sample": 0, "channel": COMPOSITE, "layer": "denseblock3"}
CHANGES = {"class_id": 5, "cell_type": "U2OS", "sample": 3, "channel": "w3", "layer": "denseblock1"}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _png_image(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(png))


def test_render_gives_three_panels(explorer_model, explorer_dataset):
    png = render_explorer_png(explorer_model, explorer_dataset, **BASE)
    image = _png_image(png)
    assert image.mode == "RGB" and image.size == (3 * 256 + 2 * 4, 256)


def test_render_is_deterministic_and_leaves_model_and_data_alone(explorer_model, explorer_dataset):
    explorer_model.train()
    before = explorer_dataset[0]["image"].clone()
    first = render_explorer_png(explorer_model, explorer_dataset, **BASE)
    assert render_explorer_png(explorer_model, explorer_dataset, **BASE) == first
    assert explorer_model.training  # grad_cam runs in eval mode and restores the flag
    assert torch.equal(explorer_dataset[0]["image"], before)


@pytest.mark.parametrize("control", sorted(CHANGES))
def test_each_argument_changes_the_png(explorer_model, explorer_dataset, control):
    base = render_explorer_png(explorer_model, explorer_dataset, **BASE)
    changed = render_explorer_png(explorer_model, explorer_dataset, **{**BASE, control: CHANGES[control]})
    assert changed != base


def test_cam_is_grad_cam_upsampled_and_normalised(explorer_model, explorer_dataset):
    item = explorer_dataset[2]
    expected = grad_cam(explorer_model, item["image"][None], item["cell_type"][None], 1, layer="denseblock3",
                        upsample=True, normalise=True)[0].numpy()
    result = explorer_cam(explorer_model, explorer_dataset, 2, 1, "denseblock3")
    np.testing.assert_array_equal(result.cam, expected)
    with torch.no_grad():
        explorer_model.eval()
        logits = explorer_model(item["image"][None], item["cell_type"][None])["logits"][0]
        explorer_model.train()
    assert result.predicted == int(logits.argmax())
    assert result.score == pytest.approx(float(logits[1]), abs=1e-5)


def test_channel_panels_differ_and_cam_panel_does_not(explorer_model, explorer_dataset):
    images = {ch: np.asarray(_png_image(render_explorer_png(explorer_model, explorer_dataset, **{**BASE, "channel": ch})))
              for ch in explorer_channels()}
    cam_panels = [im[:, 260:516] for im in images.values()]
    assert all(np.array_equal(cam_panels[0], p) for p in cam_panels[1:])
    first_panels = [im[:, :256].tobytes() for im in images.values()]
    assert len(set(first_panels)) == len(first_panels)
    grey = images["w1"][:, :256]
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])


def test_cache_serves_channel_changes(explorer_model, explorer_dataset):
    cache = ExplorerCache()
    render_explorer_png(explorer_model, explorer_dataset, **BASE, cache=cache)
    for channel in explorer_channels():
        render_explorer_png(explorer_model, explorer_dataset, **{**BASE, "channel": channel}, cache=cache)
    assert cache.cam_computations == 1
    render_explorer_png(explorer_model, explorer_dataset, **{**BASE, "class_id": 5}, cache=cache)
    assert cache.cam_computations == 2


def test_cache_evicts_least_recently_used(explorer_model, explorer_dataset):
    cache = ExplorerCache(max_cams=2, max_sites=1)
    for class_id in (0, 1, 2):
        explorer_cam(explorer_model, explorer_dataset, 0, class_id, "denseblock1", cache=cache)
    assert [key[1] for key in cache.cams] == [1, 2] and len(cache.sites) == 1


def test_default_layers_are_the_dense_blocks_and_the_last_dense_layer(explorer_model):
    assert default_explorer_layers(explorer_model) == [
        "denseblock1", "denseblock2", "denseblock3", "denseblock4", "denseblock4.denselayer4"]


# --- the widget ---------------------------------------------------------------------------------------


@pytest.fixture
def explorer(explorer_model, explorer_dataset):
    return gradcam_explorer(explorer_model, explorer_dataset)


def test_widget_starts_on_the_first_site_and_its_label(explorer, explorer_dataset):
    import ipywidgets

    assert isinstance(explorer, ipywidgets.VBox)
    assert explorer.layer_dropdown.value == "denseblock4"
    assert explorer.cell_type_dropdown.options == ("HEPG2", "U2OS")
    assert explorer.class_slider.value == int(explorer_dataset.table["label"].iloc[0])
    assert explorer.sample_slider.max == int((explorer_dataset.table["cell_type"] == "HEPG2").sum()) - 1
    assert explorer.image.format == "png" and explorer.image.value[:4] == b"\x89PNG"
    assert "HEPG2-01" in explorer.info.value and explorer.explorer.renders == 1


@pytest.mark.parametrize("control, value", [
    ("class_slider", 5), ("cell_type_dropdown", "U2OS"), ("sample_slider", 4),
    ("channel_buttons", "w5"), ("layer_dropdown", "denseblock1"),
])
def test_moving_each_control_redraws(explorer, control, value):
    explorer.layer_dropdown.value = "denseblock3"
    explorer.class_slider.value = 3
    before, renders = explorer.image.value, explorer.explorer.renders
    getattr(explorer, control).value = value
    assert explorer.explorer.renders == renders + 1
    assert explorer.image.value != before
    assert explorer.explorer.last_error is None


def test_channel_control_uses_the_cache(explorer):
    computed = explorer.explorer.cache.cam_computations
    for channel in explorer_channels():
        explorer.channel_buttons.value = channel
    assert explorer.explorer.cache.cam_computations == computed


def test_cell_type_change_keeps_the_sample_in_range(explorer_model, explorer_dataset):
    table = explorer_dataset.table
    explorer = gradcam_explorer(explorer_model, explorer_dataset.__class__(
        explorer_dataset.root, table=table.drop(index=table.index[table["cell_type"] == "U2OS"][3:])))
    explorer.sample_slider.value = 10
    renders = explorer.explorer.renders
    explorer.cell_type_dropdown.value = "U2OS"
    assert explorer.sample_slider.value == 0 and explorer.sample_slider.max == 2
    assert explorer.explorer.renders == renders + 1  # one redraw, not one per adjusted control


def test_widget_starting_values(explorer_model, explorer_dataset):
    explorer = gradcam_explorer(explorer_model, explorer_dataset, class_id=5, cell_type="U2OS", sample=2,
                                channel="w4", layer="denseblock2")
    state = explorer.explorer.state
    assert state == {"class_id": 5, "cell_type": "U2OS", "sample": 2, "channel": "w4", "layer": "denseblock2"}
    assert explorer.image.value == render_explorer_png(explorer_model, explorer_dataset, **state)
    only_early = gradcam_explorer(explorer_model, explorer_dataset, layers=["denseblock1", "denseblock2"])
    assert only_early.layer_dropdown.value == "denseblock2"  # denseblock4 not offered: the last one


@pytest.mark.parametrize("kwargs, error, message", [
    ({"class_id": 4, "classes": [0, 1]}, ValueError, "class id 4 is not among the classes offered"),
    ({"class_id": 9}, ValueError, "class id 9 is out of range"),
    ({"layer": "denseblock4", "layers": ["denseblock1"]}, KeyError, "layer 'denseblock4' is not among the layers"),
    ({"cell_type": "HUVEC"}, ValueError, "no sites of cell type 'HUVEC'"),
    ({"sample": 50}, IndexError, "sample 50 is out of range"),
    ({"channel": "DAPI"}, ValueError, "unknown channel 'DAPI'"),
    ({"classes": []}, ValueError, "classes is empty"),
    ({"layers": []}, ValueError, "layers is empty"),
])
def test_widget_bad_starting_values(explorer_model, explorer_dataset, kwargs, error, message):
    with pytest.raises(error, match=message):
        gradcam_explorer(explorer_model, explorer_dataset, **kwargs)


def test_widget_with_named_classes(explorer_model, explorer_dataset):
    explorer = gradcam_explorer(explorer_model, explorer_dataset, classes={0: "SYN-T0000", 5: "UNTREATED"},
                                layers=["denseblock2"])
    assert [label for label, _ in explorer.class_slider.options] == ["0: SYN-T0000", "5: UNTREATED"]
    explorer.class_slider.value = 5
    assert explorer.class_slider.label == "5: UNTREATED" and "class 5 " in explorer.info.value
    assert explorer.layer_dropdown.options == ("denseblock2",)


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("class_id", [6, -1, 99])
def test_class_out_of_range_is_named(explorer_model, explorer_dataset, class_id):
    with pytest.raises(ValueError, match=rf"class id {class_id} is out of range: the model has 6 classes \(0\.\.5\)"):
        render_explorer_png(explorer_model, explorer_dataset, **{**BASE, "class_id": class_id})
    with pytest.raises(ValueError, match=rf"class id {class_id} is out of range"):
        gradcam_explorer(explorer_model, explorer_dataset, classes=[0, class_id])


def test_class_of_wrong_type(explorer_model, explorer_dataset):
    with pytest.raises(TypeError, match="class id must be an integer"):
        render_explorer_png(explorer_model, explorer_dataset, **{**BASE, "class_id": "2"})


def test_unknown_layer_is_named(explorer_model, explorer_dataset):
    with pytest.raises(KeyError, match=r"unknown layer 'denseblock9'.*top-level layers: \['conv0'"):
        render_explorer_png(explorer_model, explorer_dataset, **{**BASE, "layer": "denseblock9"})
    with pytest.raises(KeyError, match="unknown layer 'layer4'"):
        gradcam_explorer(explorer_model, explorer_dataset, layers=["denseblock1", "layer4"])


def test_other_bad_settings(explorer_model, explorer_dataset):
    with pytest.raises(ValueError, match=r"unknown channel 'w7'; expected one of \['composite', 'w1'"):
        render_explorer_png(explorer_model, explorer_dataset, **{**BASE, "channel": "w7"})
    with pytest.raises(ValueError, match=r"no sites of cell type 'RPE' in the data set; it has \['HEPG2', 'U2OS'\]"):
        render_explorer_png(explorer_model, explorer_dataset, **{**BASE, "cell_type": "RPE"})
    with pytest.raises(IndexError, match=r"sample 11 is out of range: the data set has 11 HEPG2 sites \(0\.\.10\)"):
        render_explorer_png(explorer_model, explorer_dataset, **{**BASE, "sample": 11})
    with pytest.raises(ValueError, match="head must be"):
        gradcam_explorer(explorer_model, explorer_dataset, head="softmax")


def test_overlay_png_checks_shapes():
    with pytest.raises(ValueError, match=r"need a \(C, H, W\) image and an \(H, W\) cam"):
        overlay_png(np.zeros((6, 8, 8)), np.zeros((4, 4)))
