"""An interactive Grad-CAM explorer for notebooks: pick class, cell type, site, channel and layer.

:func:`render_explorer_png` is the pure core: one site of the data set, one target class, one layer and
one displayed channel give a PNG of three panels (the image, the Grad-CAM of eqs. 10-11 at the image's
resolution, and the CAM over the image). :func:`gradcam_explorer` wraps it in ipywidgets controls;
moving any control redraws the PNG in an ``ipywidgets.Image``. CAMs are cached per (site, class, layer),
so switching the displayed channel recomputes nothing.

The picture is drawn with numpy and Pillow, not matplotlib, so that a redraw takes milliseconds; the
colours are those of :func:`rxlib.plotting.explain.plot_cam_overlay` (RGB composite of
:func:`rxlib.plotting.composite.rgb_composite`, CAM in ``jet``, alpha 0.45).

ipywidgets is imported inside :func:`gradcam_explorer`; nothing happens on import.

Example (in a notebook):
    >>> from rxlib.explain.explorer import gradcam_explorer  # doctest: +SKIP
    >>> gradcam_explorer(model, RxRx1Dataset(root, split="test"))  # doctest: +SKIP
"""
from __future__ import annotations

import html
import io
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rxlib.config import CELL_TYPES, CHANNELS
from rxlib.explain.cam import ClassTarget, default_layer, grad_cam, resolve_layer
from rxlib.plotting.composite import rgb_composite, stretch

if TYPE_CHECKING:
    import ipywidgets

#: The channel control's value that shows the RGB composite of all channels.
COMPOSITE = "composite"


# --- what the controls can take ---------------------------------------------------------------------


def explorer_channels(n_channels: int = len(CHANNELS)) -> list[str]:
    """Values of the channel control: ``'composite'`` then ``'w1'``..``'wC'``."""
    return [COMPOSITE] + [f"w{i + 1}" for i in range(n_channels)]


def default_explorer_layers(model: nn.Module) -> list[str]:
    """Layers offered by default: every dense block (or ResNet stage) and the last layer of the last one.

    For a DenseNet RxNet: ``denseblock1``..``denseblock4`` and ``denseblock4.denselayerN``; for a ResNet:
    ``layer1``..``layer4`` and ``layer4.K`` (its last bottleneck). A wrapper with an ``inner`` RxNet
    (DCMIX) offers the inner network's layers.

    Raises:
        ValueError: the model has no named stages (give ``layers`` explicitly).
    """
    inner = getattr(model, "inner", model)
    if not hasattr(inner, "stages") or not hasattr(inner, "features"):
        raise ValueError(f"{type(model).__name__} has no named stages; give the explorer's layers explicitly")
    stages = inner.stages()
    prefix = "denseblock" if getattr(inner, "family", "densenet") == "densenet" else "layer"
    blocks = [name for name in stages if name.startswith(prefix)]
    if not blocks:
        raise ValueError(f"{type(inner).__name__} has no {prefix}* stages; give the explorer's layers explicitly")
    last_block = blocks[-1]
    children = [name for name, _ in inner.layer(last_block).named_children()]
    layers = list(blocks)
    if children:
        layers.append(f"{last_block}.{children[-1]}")
    return layers


def _n_classes(model: nn.Module) -> int:
    inner = getattr(model, "inner", model)
    if not hasattr(inner, "n_classes"):
        raise ValueError(f"{type(model).__name__} has no n_classes; cannot check class ids")
    return int(inner.n_classes)


def check_class_id(model: nn.Module, class_id: Any) -> int:
    """The class id as an int; a ValueError naming it and the valid range (a TypeError if not an int)."""
    n = _n_classes(model)
    if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)):
        raise TypeError(f"class id must be an integer in [0, {n - 1}], got {class_id!r}")
    if not 0 <= int(class_id) < n:
        raise ValueError(f"class id {int(class_id)} is out of range: the model has {n} classes (0..{n - 1})")
    return int(class_id)


def check_layer(model: nn.Module, layer: Any) -> str:
    """The layer name if the model has it, else a KeyError naming it and the model's top-level layers."""
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a name such as 'denseblock4', got {type(layer).__name__}")
    try:
        resolve_layer(model, layer)
    except KeyError as exc:
        raise KeyError(f"unknown layer {layer!r} for the Grad-CAM explorer: {exc.args[0]}") from None
    return layer


def cell_type_sites(dataset, cell_type: str) -> np.ndarray:
    """Positions in ``dataset`` (0-based item indices) of the sites of one cell type, in table order.

    Raises:
        ValueError: the data set has no site of that cell type (the message lists those it has).
    """
    table = _table(dataset)
    positions = np.flatnonzero(table["cell_type"].to_numpy() == cell_type)
    if len(positions) == 0:
        present = _present_cell_types(dataset)
        raise ValueError(f"no sites of cell type {cell_type!r} in the data set; it has {present}")
    return positions


def _table(dataset):
    table = getattr(dataset, "table", None)
    if table is None or "cell_type" not in table.columns:
        raise TypeError(f"{type(dataset).__name__} has no metadata table with a cell_type column "
                        "(use rxlib.data.RxRx1Dataset)")
    return table


def _present_cell_types(dataset) -> list[str]:
    present = set(_table(dataset)["cell_type"].unique())
    return [c for c in CELL_TYPES if c in present] + sorted(present - set(CELL_TYPES))


# --- the cache ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CamResult:
    """One Grad-CAM: the ``(H, W)`` map in [0, 1], the target class's score and the predicted class."""

    cam: np.ndarray
    score: float
    predicted: int


class ExplorerCache:
    """Least-recently-used store of CAMs per (site, class, layer, head) and of loaded sites.

    Args:
        max_cams: CAMs kept (each ``H x W`` float32: 1 MiB at 512 x 512).
        max_sites: data set items kept (each ``6 x H x W`` float32).
    """

    def __init__(self, max_cams: int = 256, max_sites: int = 32) -> None:
        if max_cams < 1 or max_sites < 1:
            raise ValueError(f"cache sizes must be positive, got max_cams={max_cams}, max_sites={max_sites}")
        self.max_cams, self.max_sites = max_cams, max_sites
        self.cams: OrderedDict[tuple, CamResult] = OrderedDict()
        self.sites: OrderedDict[int, dict] = OrderedDict()
        self.cam_computations = 0  # how many CAMs were computed (not served from the cache)

    @staticmethod
    def _get(store: OrderedDict, key):
        value = store.get(key)
        if value is not None:
            store.move_to_end(key)
        return value

    @staticmethod
    def _put(store: OrderedDict, key, value, limit: int) -> None:
        store[key] = value
        store.move_to_end(key)
        while len(store) > limit:
            store.popitem(last=False)

    def site(self, dataset, position: int) -> dict:
        item = self._get(self.sites, position)
        if item is None:
            item = dataset[position]
            self._put(self.sites, position, item, self.max_sites)
        return item

    def cam(self, key: tuple) -> CamResult | None:
        return self._get(self.cams, key)

    def store_cam(self, key: tuple, result: CamResult) -> None:
        self.cam_computations += 1
        self._put(self.cams, key, result, self.max_cams)

    def clear(self) -> None:
        self.cams.clear()
        self.sites.clear()


class _RecordingTarget(ClassTarget):
    """A class target that also keeps the head's scores it was called on (for the predicted class)."""

    def __init__(self, category: int, head: str) -> None:
        super().__init__(category, head)
        self.scores: torch.Tensor | None = None

    def __call__(self, output):
        scores = output[self.head] if isinstance(output, Mapping) else output
        self.scores = scores.detach()
        return super().__call__(output)


def explorer_cam(model: nn.Module, dataset, position: int, class_id: int, layer: str, *,
                 head: str = "logits", cache: ExplorerCache | None = None) -> CamResult:
    """Grad-CAM of one site (item ``position`` of the data set) for ``class_id`` at ``layer``, cached.

    The map is upsampled to the image's size and min-max normalised (``grad_cam(..., upsample=True,
    normalise=True)``), on the model's device, then moved to the CPU.
    """
    cache = cache if cache is not None else ExplorerCache(max_cams=1, max_sites=1)
    key = (int(position), int(class_id), layer, head)
    found = cache.cam(key)
    if found is not None:
        return found
    item = cache.site(dataset, position)
    target = _RecordingTarget(class_id, head)
    cams, scores = grad_cam(model, item["image"][None], item["cell_type"][None], target, layer=layer,
                            head=head, upsample=True, normalise=True, return_scores=True)
    result = CamResult(cam=cams[0].float().cpu().numpy(), score=float(scores[0]),
                       predicted=int(target.scores.argmax()))
    cache.store_cam(key, result)
    return result


# --- drawing --------------------------------------------------------------------------------------------


def _colour_map(values: np.ndarray, cmap: str) -> np.ndarray:
    from matplotlib import colormaps  # only the colour table; no figure is made

    return colormaps[cmap](np.clip(values, 0.0, 1.0))[..., :3]


def _panel(rgb: np.ndarray, size: int):
    from PIL import Image

    picture = Image.fromarray(np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8), mode="RGB")
    if picture.size != (size, size):
        # nearest when enlarging keeps the pixels of a small image honest; box when shrinking
        resample = Image.Resampling.NEAREST if size >= max(picture.size) else Image.Resampling.BOX
        picture = picture.resize((size, size), resample)
    return picture


def overlay_png(image: np.ndarray | torch.Tensor, cam: np.ndarray, channel: str = COMPOSITE, *,
                alpha: float = 0.45, cmap: str = "jet", panel_size: int = 256, gap: int = 4) -> bytes:
    """PNG bytes of three panels: the image (composite or one channel in grey), the CAM, the overlay.

    Args:
        image: ``(C, H, W)`` stack (any value range; each channel is stretched to its 1-99.5 percentiles).
        cam: ``(H, W)`` map in [0, 1] at the image's resolution.
        channel: ``'composite'`` or ``'w1'``..``'wC'``.
        alpha: opacity of the CAM over the image.
        cmap: matplotlib colour map of the CAM.
        panel_size: side of each square panel in pixels.
        gap: white pixels between panels.

    Raises:
        ValueError: unknown channel, shapes that do not match, or bad sizes.
    """
    from PIL import Image

    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image, dtype=np.float64)
    cam = np.asarray(cam, dtype=np.float64)
    if image.ndim != 3 or cam.shape != image.shape[1:]:
        raise ValueError(f"need a (C, H, W) image and an (H, W) cam, got {image.shape} and {cam.shape}")
    if not 0.0 <= alpha <= 1.0 or panel_size < 8 or gap < 0:
        raise ValueError(f"bad drawing options: alpha={alpha}, panel_size={panel_size}, gap={gap}")
    channels = explorer_channels(image.shape[0])
    if channel not in channels:
        raise ValueError(f"unknown channel {channel!r}; expected one of {channels}")
    if channel == COMPOSITE:
        base = rgb_composite(image)
    else:
        base = np.repeat(stretch(image[int(channel[1:]) - 1])[..., None], 3, axis=2)
    heat = _colour_map(cam, cmap)
    overlay = (1.0 - alpha) * base + alpha * heat
    panels = [_panel(p, panel_size) for p in (base, heat, overlay)]
    sheet = Image.new("RGB", (3 * panel_size + 2 * gap, panel_size), (255, 255, 255))
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * (panel_size + gap), 0))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def _site_position(dataset, cell_type: str, sample: Any) -> int:
    positions = cell_type_sites(dataset, cell_type)
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
        raise TypeError(f"sample must be an integer index among the {cell_type} sites, got {sample!r}")
    if not 0 <= int(sample) < len(positions):
        raise IndexError(f"sample {int(sample)} is out of range: the data set has {len(positions)} "
                         f"{cell_type} sites (0..{len(positions) - 1})")
    return int(positions[int(sample)])


def render_explorer_png(model: nn.Module, dataset, class_id: int, cell_type: str, sample: int,
                        channel: str, layer: str, *, head: str = "logits", cache: ExplorerCache | None = None,
                        alpha: float = 0.45, cmap: str = "jet", panel_size: int = 256) -> bytes:
    """The explorer's picture for one setting of its controls, as PNG bytes.

    Args:
        model: an RxNet (or a DCMIX wrapper), on any device.
        dataset: an :class:`~rxlib.data.RxRx1Dataset` (anything with ``table`` and RxRx1 items).
        class_id: target class of the CAM (0..n_classes-1).
        cell_type: one of the data set's cell types (``'HEPG2'``...).
        sample: index among the data set's sites of that cell type, in table order.
        channel: ``'composite'`` or ``'w1'``..``'w6'``.
        layer: the layer Grad-CAM hooks, e.g. ``'denseblock4'``.
        head: ``'logits'`` (pre-softmax score, the paper's ``y^c``) or ``'cosine'``.
        cache: an :class:`ExplorerCache` shared between calls (None: nothing is kept).
        alpha, cmap, panel_size: drawing options of :func:`overlay_png`.

    Returns:
        PNG bytes (RGB, three panels: image, CAM, overlay).

    Raises:
        ValueError: a class id out of range, an unknown cell type or channel.
        TypeError: a class id or sample that is not an integer.
        IndexError: a sample beyond the sites of that cell type.
        KeyError: a layer the model does not have.
    """
    class_id = check_class_id(model, class_id)
    layer = check_layer(model, layer)
    channels = explorer_channels(len(CHANNELS))
    if channel not in channels:
        raise ValueError(f"unknown channel {channel!r}; expected one of {channels}")
    position = _site_position(dataset, cell_type, sample)
    cache = cache if cache is not None else ExplorerCache(max_cams=1, max_sites=1)
    result = explorer_cam(model, dataset, position, class_id, layer, head=head, cache=cache)
    image = cache.site(dataset, position)["image"]
    return overlay_png(image, result.cam, channel, alpha=alpha, cmap=cmap, panel_size=panel_size)


# --- the widget -----------------------------------------------------------------------------------------


def _class_options(model: nn.Module, classes) -> list[tuple[str, int]]:
    if classes is None:
        ids = list(range(_n_classes(model)))
        return [(str(i), i) for i in ids]
    if isinstance(classes, Mapping):
        pairs = [(f"{check_class_id(model, k)}: {v}", int(k)) for k, v in classes.items()]
    else:
        pairs = [(str(check_class_id(model, k)), int(k)) for k in classes]
    if not pairs:
        raise ValueError("classes is empty; give at least one class id")
    return pairs


def _starting_values(model: nn.Module, dataset, layers, classes, class_id, cell_type, sample: int, channel: str,
                     layer) -> dict:
    """The explorer's options and first view, checked as :func:`render_explorer_png` checks them: the layers
    (default :func:`default_explorer_layers`), classes, cell types, the class (default: the first site's own
    label when offered), the layer (default: the architecture's Grad-CAM layer when offered) and the channel.

    Raises:
        ValueError: an empty data set or layer list, a class or channel not offered.
        KeyError: a layer not among those offered.
    """
    if len(dataset) == 0:
        raise ValueError("the data set is empty")
    layers = default_explorer_layers(model) if layers is None else [check_layer(model, name) for name in layers]
    if not layers:
        raise ValueError("layers is empty; give at least one layer name")
    class_options = _class_options(model, classes)
    class_ids = [value for _, value in class_options]
    cell_types = _present_cell_types(dataset)
    cell_type = cell_types[0] if cell_type is None else cell_type
    position = _site_position(dataset, cell_type, sample)
    if class_id is None:  # the site's own label when it is offered
        label = int(_table(dataset)["label"].iloc[position]) if "label" in _table(dataset).columns else -1
        class_id = label if label in class_ids else class_ids[0]
    elif check_class_id(model, class_id) not in class_ids:
        shown = ", ".join(map(str, class_ids[:10])) + (", ..." if len(class_ids) > 10 else "")
        raise ValueError(f"class id {class_id} is not among the classes offered ({shown})")
    if layer is None:
        try:
            preferred = default_layer(model)
        except ValueError:  # not an RxNet: no default, take the last layer offered
            preferred = None
        layer = preferred if preferred in layers else layers[-1]
    elif layer not in layers:
        raise KeyError(f"layer {layer!r} is not among the layers offered: {layers}")
    channel_names = explorer_channels(len(CHANNELS))
    if channel not in channel_names:
        raise ValueError(f"unknown channel {channel!r}; expected one of {channel_names}")
    return {"layers": list(layers), "layer": layer, "class_options": class_options, "class_id": int(class_id),
            "cell_types": cell_types, "cell_type": cell_type, "sample": int(sample),
            "channel_names": channel_names, "channel": channel}


class GradCamExplorer:
    """The explorer's controls, picture and state; :attr:`widget` is what a notebook displays.

    Attributes:
        class_slider: ``SelectionSlider`` of target classes (value: the class id).
        cell_type_dropdown: ``Dropdown`` of the data set's cell types.
        sample_slider: ``IntSlider``, index among the sites of the chosen cell type.
        channel_buttons: ``ToggleButtons``: ``composite``, ``w1``..``w6``.
        layer_dropdown: ``Dropdown`` of layer names.
        image: ``ipywidgets.Image`` holding the PNG bytes of the picture.
        info: ``HTML`` line naming the site, its label, the predicted class and the target score
            (or the error of the last redraw, in red).
        cache: the :class:`ExplorerCache`.
        renders: number of redraws so far.
        last_error: the exception of the last failed redraw, or None.
    """

    def __init__(self, model: nn.Module, dataset, *, layers: Sequence[str] | None = None,
                 classes: Sequence[int] | Mapping[int, str] | None = None, class_id: int | None = None,
                 cell_type: str | None = None, sample: int = 0, channel: str = COMPOSITE, layer: str | None = None,
                 head: str = "logits", alpha: float = 0.45, cmap: str = "jet", panel_size: int = 256,
                 cache_size: int = 256) -> None:
        if head not in ("logits", "cosine"):
            raise ValueError(f"head must be 'logits' or 'cosine', got {head!r}")
        start = _starting_values(model, dataset, layers, classes, class_id, cell_type, sample, channel, layer)
        self.model, self.dataset, self.head = model, dataset, head
        self.alpha, self.cmap, self.panel_size = alpha, cmap, panel_size
        self.cache = ExplorerCache(max_cams=cache_size)
        self.renders = 0
        self.last_error: BaseException | None = None
        self._adjusting = False
        self._build_widgets(start)
        self.redraw()

    def _build_widgets(self, start: dict) -> None:
        """The controls (set to ``start``, from :func:`_starting_values`), the picture and the info line."""
        import ipywidgets as widgets

        layout = widgets.Layout(width="480px")
        style = {"description_width": "80px"}
        self.class_slider = widgets.SelectionSlider(
            options=start["class_options"], value=start["class_id"],
            description="class", continuous_update=False, layout=layout, style=style)
        self.cell_type_dropdown = widgets.Dropdown(options=start["cell_types"], value=start["cell_type"],
                                                   description="cell type", layout=layout, style=style)
        self.sample_slider = widgets.IntSlider(value=start["sample"], min=0,
                                               max=len(cell_type_sites(self.dataset, start["cell_type"])) - 1,
                                               description="sample", continuous_update=False,
                                               layout=layout, style=style)
        self.channel_buttons = widgets.ToggleButtons(
            options=start["channel_names"], value=start["channel"], description="channel",
            style={**style, "button_width": "72px"}, tooltips=["RGB composite of all channels"] + list(CHANNELS))
        self.layer_dropdown = widgets.Dropdown(options=start["layers"], value=start["layer"],
                                               description="layer", layout=layout, style=style)
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.image.add_class("rxlib-gradcam-image")
        self.info = widgets.HTML()
        self.info.add_class("rxlib-gradcam-info")
        controls = [self.class_slider, self.cell_type_dropdown, self.sample_slider, self.channel_buttons,
                    self.layer_dropdown]
        self.widget = widgets.VBox([*controls, self.image, self.info])
        self.widget.add_class("rxlib-gradcam-explorer")
        for control in controls:
            control.observe(self._on_change, names="value")

    # the sample slider's range follows the cell type; one redraw per user action
    def _on_change(self, change: dict) -> None:
        if self._adjusting:
            return
        if change["owner"] is self.cell_type_dropdown:
            n_sites = len(cell_type_sites(self.dataset, change["new"]))
            self._adjusting = True
            try:
                if self.sample_slider.value > n_sites - 1:
                    self.sample_slider.value = 0
                self.sample_slider.max = n_sites - 1
            finally:
                self._adjusting = False
        self.redraw()

    @property
    def state(self) -> dict[str, Any]:
        """The controls' values as :func:`render_explorer_png` arguments."""
        return {"class_id": self.class_slider.value, "cell_type": self.cell_type_dropdown.value,
                "sample": self.sample_slider.value, "channel": self.channel_buttons.value,
                "layer": self.layer_dropdown.value}

    def redraw(self) -> None:
        """Recompute (or fetch from the cache) the CAM for the controls' values and draw it.

        An error is shown in :attr:`info` and kept in :attr:`last_error`; the previous picture stays.
        """
        state = self.state
        try:
            png = render_explorer_png(self.model, self.dataset, **state, head=self.head, cache=self.cache,
                                      alpha=self.alpha, cmap=self.cmap, panel_size=self.panel_size)
        except Exception as exc:  # noqa: BLE001 - shown to the user in the widget, which must stay usable
            self.last_error = exc
            self.info.value = (f"<span style='color:#b00'>{html.escape(type(exc).__name__)}: "
                               f"{html.escape(str(exc))}</span>")
            return
        self.last_error = None
        self.image.value = png
        self.renders += 1
        self.info.value = self._describe(state)

    def _describe(self, state: dict[str, Any]) -> str:
        position = _site_position(self.dataset, state["cell_type"], state["sample"])
        row = _table(self.dataset).iloc[position]
        result = explorer_cam(self.model, self.dataset, position, state["class_id"], state["layer"],
                              head=self.head, cache=self.cache)
        site = row.get("site_id", f"item {position}")
        # a CAM that is zero everywhere: no feature map has positive weight for this class (eq. 11's ReLU)
        empty = " <i>(zero everywhere: no positive evidence at this layer)</i>" if not result.cam.any() else ""
        label = row.get("label", "?")
        return (f"site <b>{html.escape(str(site))}</b> (label {html.escape(str(label))}, "
                f"predicted {result.predicted}) | class {state['class_id']} {self.head} "
                f"{result.score:.3f} | {html.escape(state['layer'])}{empty} | panels: "
                f"{html.escape(state['channel'])}, Grad-CAM (jet, 0-1), overlay")


def gradcam_explorer(model: nn.Module, dataset, *, layers: Sequence[str] | None = None,
                     classes: Sequence[int] | Mapping[int, str] | None = None, class_id: int | None = None,
                     cell_type: str | None = None, sample: int = 0, channel: str = COMPOSITE,
                     layer: str | None = None, head: str = "logits", alpha: float = 0.45, cmap: str = "jet",
                     panel_size: int = 256, cache_size: int = 256) -> ipywidgets.Widget:
    """An ipywidgets Grad-CAM explorer over the sites of a data set.

    Controls: target class, cell type, sample (index among the sites of that cell type), channel
    (``composite`` or ``w1``..``w6``) and layer. Moving any of them redraws the picture of
    :func:`render_explorer_png`; CAMs are cached per (site, class, layer), so changing the channel
    is immediate.

    Args:
        model: an RxNet (or a DCMIX wrapper); it is put in eval mode only while a CAM is computed.
        dataset: an :class:`~rxlib.data.RxRx1Dataset`.
        layers: layer names offered (default :func:`default_explorer_layers`: the dense blocks and the
            last dense layer).
        classes: class ids offered, or a mapping id -> name (default: every class of the model).
        class_id, cell_type, sample, channel, layer: the controls' starting values (defaults: the
            site's own label when offered, else the first class; the data set's first cell type; its
            first site; the composite; ``denseblock4`` / ``layer4`` when offered, else the last layer).
        head: ``'logits'`` or ``'cosine'``.
        alpha, cmap, panel_size: drawing options of :func:`overlay_png`.
        cache_size: CAMs kept in memory.

    Returns:
        An ``ipywidgets.VBox`` with the controls as attributes (``class_slider``, ``cell_type_dropdown``,
        ``sample_slider``, ``channel_buttons``, ``layer_dropdown``), the ``image`` and the ``info`` line;
        its ``explorer`` attribute is the :class:`GradCamExplorer` (cache, redraw count, last error).

    Raises:
        ValueError: a class id out of range or not offered, an unknown cell type or channel, an empty
            data set or class list.
        IndexError: a starting sample beyond the sites of its cell type.
        KeyError: a layer the model does not have, or a starting layer not offered.
    """
    explorer = GradCamExplorer(model, dataset, layers=layers, classes=classes, class_id=class_id,
                               cell_type=cell_type, sample=sample, channel=channel, layer=layer, head=head,
                               alpha=alpha, cmap=cmap, panel_size=panel_size, cache_size=cache_size)
    box = explorer.widget
    box.explorer = explorer
    for name in _CONTROL_ATTRIBUTES:  # so that tests and users reach the controls from the widget
        setattr(box, name, getattr(explorer, name))
    return box


_CONTROL_ATTRIBUTES = ("class_slider", "cell_type_dropdown", "sample_slider", "channel_buttons", "layer_dropdown",
                       "image", "info")
