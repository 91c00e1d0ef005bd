"""An interactive Grad-CAM explorer for notebooks: pick class, cell type, site, channel and layer, compare.

:func:`render_explorer_png` is the pure core: one site of the data set, one target class, one layer and
one displayed channel give a PNG row of three titled panels (the image, the Grad-CAM of eqs. 10-11 at the
image's resolution, and the CAM over the image) and a colour bar with its scale; a comparison (a second
class, layer or cell type) adds a second row. Where the data set has cell masks (the synthetic ground
truth), the pixels outside the cells are dimmed. :func:`gradcam_explorer` wraps it in ipywidgets
controls; moving any control redraws the PNG in an ``ipywidgets.Image``, and a button saves the current
view as a PNG whose name records its settings. CAMs are cached per (site, class, layer), so switching the
displayed channel, the opacity or the colour map recomputes nothing.

The picture is drawn by :mod:`rxlib.explain.explorer_draw` with numpy and Pillow, not matplotlib, so that
a redraw takes milliseconds; the CAM's colours are a colour-blind-safe map (``viridis`` by default).

ipywidgets is imported inside :func:`gradcam_explorer`; nothing happens on import.

Example (in a notebook; notebook 07 passes its Figure 11 layer, :data:`rxlib.profiles.GRADCAM_LAYER`):
    >>> from rxlib.explain.explorer import gradcam_explorer  # doctest: +SKIP
    >>> gradcam_explorer(model, RxRx1Dataset(root, split="test"), layer=GRADCAM_LAYER[profile])  # doctest: +SKIP
"""
from __future__ import annotations

import html
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from rxlib.config import CELL_TYPES, CHANNELS, N_CLASSES_RXRX1
from rxlib.explain.cam import ClassTarget, default_layer, grad_cam, resolve_layer
from rxlib.explain.explorer_draw import (
    CAM_COLOUR_MAPS,
    COMPOSITE,
    DEFAULT_ALPHA,
    DEFAULT_CMAP,
    PanelRow,
    colour_table,
    explorer_channels,
    overlay_png,
    row_layout,
    rows_png,
)

if TYPE_CHECKING:
    import ipywidgets

__all__ = ["CAM_COLOUR_MAPS", "COMPARE_MODES", "COMPOSITE", "CamResult", "ExplorerCache", "GradCamExplorer",
           "cell_type_sites", "check_class_id", "check_layer", "default_explorer_layers", "explorer_cam",
           "explorer_channels", "explorer_class_names", "explorer_views", "gradcam_explorer", "matching_sample", "overlay_png",
           "render_explorer_png", "row_layout", "save_view_png", "site_cell_mask", "view_stem"]

#: Values of the comparison control: no comparison, or a second row with another class, layer or cell type.
COMPARE_MODES = ("off", "class", "layer", "cell type")


# --- what the controls can take ---------------------------------------------------------------------


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


def explorer_class_names(dataset, n_classes: int) -> dict[int, str]:
    """The label of every class id for the explorer's controls and titles.

    ``'3: SYN-T0003 (treatment)'`` where the data set's table names the class (its ``sirna`` and
    ``well_type`` columns on a site of that label); else ``'class 12 (treatment)'``, with the well type of
    the RxRx1 convention when there are its 1,139 classes, or just ``'class 12'``. A ``sirna`` that is
    only the class number (Kaggle 2019) is no name.
    """
    from rxlib.data.labels import well_type_of_class

    table = _table(dataset)
    names: dict[int, str] = {}
    if "label" in table.columns:
        columns = ["label"] + [c for c in ("sirna", "well_type") if c in table.columns]
        first = table.loc[table["label"].between(0, n_classes - 1), columns].drop_duplicates("label")
        for row in first.to_dict("records"):
            class_id, sirna, kind = int(row["label"]), str(row.get("sirna", "")), row.get("well_type")
            suffix = f" ({kind})" if isinstance(kind, str) and kind else ""
            named = sirna not in ("", "nan", str(class_id))
            names[class_id] = f"{class_id}: {sirna}{suffix}" if named else f"class {class_id}{suffix}"
    for class_id in range(n_classes):
        if class_id not in names:
            kind = f" ({well_type_of_class(class_id)})" if n_classes == N_CLASSES_RXRX1 else ""
            names[class_id] = f"class {class_id}{kind}"
    return names


# --- the cache ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CamResult:
    """One Grad-CAM: the ``(H, W)`` map in [0, 1], the target class's score and the predicted class."""

    cam: np.ndarray
    score: float
    predicted: int


class ExplorerCache:
    """Least-recently-used store of CAMs per (site, class, layer, head), of loaded sites and of cell masks.

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
        self.masks: OrderedDict[int, tuple] = OrderedDict()  # (mask or None,) per site
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

    def mask(self, dataset, position: int) -> np.ndarray | None:
        """The site's cell mask (:func:`site_cell_mask`), read once; None where there is none."""
        found = self._get(self.masks, position)
        if found is None:
            found = (site_cell_mask(dataset, position),)
            self._put(self.masks, position, found, self.max_sites)
        return found[0]

    def cam(self, key: tuple) -> CamResult | None:
        return self._get(self.cams, key)

    def store_cam(self, key: tuple, result: CamResult) -> None:
        self.cam_computations += 1
        self._put(self.cams, key, result, self.max_cams)

    def clear(self) -> None:
        self.cams.clear()
        self.sites.clear()
        self.masks.clear()


def site_cell_mask(dataset, position: int) -> np.ndarray | None:
    """The ``(H, W)`` boolean cell mask of item ``position`` (True on cells) from the synthetic ground truth
    (:func:`rxlib.explain.gradcamo.truth_mask_paths`), or None where the data set has no masks (real data)."""
    from rxlib.explain.gradcamo import has_truth_masks, truth_mask_paths
    from rxlib.io import read_mask_png

    root = getattr(dataset, "root", None)
    if root is None or not has_truth_masks(root):
        return None
    row = _table(dataset).iloc[int(position)]
    path = truth_mask_paths(root, row["experiment"], int(row["plate"]), row["well"], int(row["site"]))["cells"]
    return read_mask_png(path) != 0 if path.is_file() else None


class _RecordingTarget(ClassTarget):
    """A class target that also keeps the head's scores it was called on (for the predicted class)."""

    def __init__(self, category: int, head: str) -> None:
        super().__init__(category, head)
        self.scores: torch.Tensor | None = None

    def __call__(self, output):
        scores = output[self.head] if isinstance(output, Mapping) else output
        self.scores = scores.detach()
        return super().__call__(output)


@contextmanager
def _without_checkpointing(model: nn.Module):
    """Memory-efficient dense layers (torchvision's ``memory_efficient``, gradient checkpointing) run
    plainly inside the block and as before after it: for one site checkpointing saves no memory worth
    having and recomputes every dense layer in the backward pass (about a third of a CAM's time on the
    smoke model). The CAM is the same: the recomputation repeats the same operations."""
    layers = [m for m in model.modules() if getattr(m, "memory_efficient", None) is True]
    for layer in layers:
        layer.memory_efficient = False
    try:
        yield
    finally:
        for layer in layers:
            layer.memory_efficient = True


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
    with _without_checkpointing(model):
        cams, scores = grad_cam(model, item["image"][None], item["cell_type"][None], target, layer=layer,
                                head=head, upsample=True, normalise=True, return_scores=True)
    result = CamResult(cam=cams[0].float().cpu().numpy(), score=float(scores[0]),
                       predicted=int(target.scores.argmax()))
    cache.store_cam(key, result)
    return result




# --- the picture ----------------------------------------------------------------------------------------


def _site_position(dataset, cell_type: str, sample: Any) -> int:
    positions = cell_type_sites(dataset, cell_type)
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
        raise TypeError(f"sample must be an integer index among the {cell_type} sites, got {sample!r}")
    if not 0 <= int(sample) < len(positions):
        raise IndexError(f"sample {int(sample)} is out of range: the data set has {len(positions)} "
                         f"{cell_type} sites (0..{len(positions) - 1})")
    return int(positions[int(sample)])


def _check_channel(channel: str) -> str:
    channels = explorer_channels(len(CHANNELS))
    if channel not in channels:
        raise ValueError(f"unknown channel {channel!r}; expected one of {channels}")
    return channel


def matching_sample(dataset, cell_type: str, class_id: int, fallback: int) -> int:
    """Index among the ``cell_type`` sites of the first one labelled ``class_id``; where none is,
    ``fallback`` (clipped to the sites there are). The cell-type comparison shows this site."""
    positions = cell_type_sites(dataset, cell_type)
    table = _table(dataset)
    if "label" in table.columns:
        hits = np.flatnonzero(table["label"].to_numpy()[positions] == class_id)
        if len(hits):
            return int(hits[0])
    return min(int(fallback), len(positions) - 1)


def _check_compare(compare) -> tuple[str, Any] | None:
    if compare is None:
        return None
    if not isinstance(compare, tuple) or len(compare) != 2 or compare[0] not in COMPARE_MODES:
        raise ValueError(f"compare must be None or (mode, value) with mode in {COMPARE_MODES}, got {compare!r}")
    return None if compare[0] == "off" else compare


def explorer_views(model: nn.Module, dataset, class_id: int, cell_type: str, sample: int, layer: str,
                   compare: tuple[str, Any] | None = None) -> list[dict[str, Any]]:
    """The views (rows) of one setting: ``{class_id, cell_type, sample, layer}`` as given, and for a
    comparison a second one with another class (``('class', 5)``), layer (``('layer', 'denseblock1')``)
    or cell type (``('cell type', 'U2OS')``: the same target class, on that cell type's first site
    labelled with it, else on the same sample index; :func:`matching_sample`).

    Raises:
        ValueError: a bad comparison, a class out of range; KeyError: an unknown layer.
    """
    first = {"class_id": check_class_id(model, class_id), "cell_type": cell_type, "sample": sample,
             "layer": check_layer(model, layer)}
    compare = _check_compare(compare)
    if compare is None:
        return [first]
    mode, value = compare
    if mode == "class":
        second = {**first, "class_id": check_class_id(model, value)}
    elif mode == "layer":
        second = {**first, "layer": check_layer(model, value)}
    else:
        second = {**first, "cell_type": value, "sample": matching_sample(dataset, value, first["class_id"], sample)}
    return [first, second]


def _fit_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The mask at the image's size (nearest neighbour), for data sets whose images are resized."""
    if mask is None or mask.shape == tuple(shape):
        return mask
    from PIL import Image

    resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.NEAREST)
    return np.asarray(resized) > 0


def _view_row(model: nn.Module, dataset, view: dict[str, Any], channel: str, *, alpha: float, dim: bool,
              head: str, cache: ExplorerCache, names: Mapping[int, str]) -> PanelRow:
    """One row of the picture: the view's site, its CAM, the cell mask when dimming, and the titles."""
    position = _site_position(dataset, view["cell_type"], view["sample"])
    result = explorer_cam(model, dataset, position, view["class_id"], view["layer"], head=head, cache=cache)
    mask = _fit_mask(cache.mask(dataset, position), result.cam.shape) if dim else None
    site = _table(dataset).iloc[position].get("site_id", f"item {position}")
    dimming = (" · off-cell dimmed" if mask is not None else " · no cell masks") if dim else ""
    class_label = names.get(view["class_id"], f"class {view['class_id']}")
    titles = (f"{site} · {channel}", f"CAM {class_label}", f"{view['layer']} · opacity {alpha:.2f}{dimming}")
    return PanelRow(image=cache.site(dataset, position)["image"], cam=result.cam, channel=channel,
                    titles=titles, mask=mask)


def render_explorer_png(model: nn.Module, dataset, class_id: int, cell_type: str, sample: int,
                        channel: str, layer: str, *, head: str = "logits", cache: ExplorerCache | None = None,
                        alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP, panel_size: int = 256,
                        dim: bool = True, compare: tuple[str, Any] | None = None,
                        class_names: Mapping[int, str] | None = None) -> bytes:
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
        alpha, cmap, panel_size: drawing options of :func:`overlay_png` (opacity, colour map, panel side).
        dim: dim the pixels outside the cells where the data set has cell masks (:func:`site_cell_mask`).
        compare: None, or a second row: ``('class', id)``, ``('layer', name)`` or ``('cell type', name)``
            (:func:`explorer_views`).
        class_names: labels of the class ids for the titles (default :func:`explorer_class_names`).

    Returns:
        PNG bytes (RGB): a row of three titled panels (image, CAM, overlay) and a colour bar, two rows
        when comparing (:func:`rxlib.explain.explorer_draw.row_layout`).

    Raises:
        ValueError: a class id out of range, an unknown cell type or channel, a bad comparison.
        TypeError: a class id or sample that is not an integer.
        IndexError: a sample beyond the sites of that cell type.
        KeyError: a layer the model does not have, an unknown colour map.
    """
    views = explorer_views(model, dataset, class_id, cell_type, sample, layer, compare)
    _check_channel(channel)
    colour_table(cmap)
    cache = cache if cache is not None else ExplorerCache(max_cams=2, max_sites=2)
    names = class_names if class_names is not None else explorer_class_names(dataset, _n_classes(model))
    rows = [_view_row(model, dataset, view, channel, alpha=alpha, dim=dim, head=head, cache=cache, names=names)
            for view in views]
    return rows_png(rows, alpha=alpha, cmap=cmap, panel_size=panel_size)


# --- saving a view --------------------------------------------------------------------------------------


def view_stem(state: Mapping[str, Any], site: str) -> str:
    """File stem of a saved view that records its settings, e.g.
    ``gradcam_HEPG2-01_1_B02_1_class3_denseblock2_composite_viridis_a45_dim_vs-class5``."""
    parts = ["gradcam", str(site), f"class{state['class_id']}", state["layer"], state["channel"], state["cmap"],
             f"a{round(100 * state['alpha'])}"]
    if state.get("dim"):
        parts.append("dim")
    compare = _check_compare(state.get("compare"))
    if compare is not None:
        parts.append(f"vs-{compare[0]}{compare[1]}")
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "_".join(parts)).strip("-_")


def save_view_png(png: bytes, folder: str | Path, stem: str) -> Path:
    """Write ``png`` as ``folder/stem.png`` under the project's rules for outputs (:mod:`rxlib.outputs`):
    the folder is claimed, the file recorded in its ``.rxlib-written.txt`` before it is written, and
    written atomically; a file of that name that rxlib did not write is never overwritten.

    Raises:
        ForeignFilesError: ``folder/stem.png`` exists and is not rxlib's.
        OutputFolderBusy: another process is writing the folder.
        ValueError: ``stem`` is not a bare file stem.
    """
    from rxlib.io import atomic_path
    from rxlib.manifest import check_stem
    from rxlib.outputs import claim_output_folder

    path = Path(folder) / f"{check_stem(stem)}.png"
    with claim_output_folder(folder, "the Grad-CAM explorer") as out:
        out.refuse_unrecorded([path])
        out.record(path)
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
    return path


# --- the widget -----------------------------------------------------------------------------------------


def _class_options(model: nn.Module, dataset, classes) -> list[tuple[str, int]]:
    """(label, id) of the classes offered: a mapping's own names, else :func:`explorer_class_names`."""
    if isinstance(classes, Mapping):
        pairs = [(f"{check_class_id(model, k)}: {v}", int(k)) for k, v in classes.items()]
    else:
        ids = range(_n_classes(model)) if classes is None else [check_class_id(model, k) for k in classes]
        names = explorer_class_names(dataset, _n_classes(model))
        pairs = [(names[int(i)], int(i)) for i in ids]
    if not pairs:
        raise ValueError("classes is empty; give at least one class id")
    return pairs


def _starting_values(model: nn.Module, dataset, layers, classes, class_id, cell_type, sample: int, channel: str,
                     layer) -> dict:
    """The explorer's options and first view, checked as :func:`render_explorer_png` checks them: the layers
    (default :func:`default_explorer_layers`), classes, cell types, the class (default: the first site's own
    label when offered), the layer (default: the architecture's Grad-CAM layer when offered; notebook 07
    passes its Figure 11 layer) and the channel.

    Raises:
        ValueError: an empty data set or layer list, a class or channel not offered.
        KeyError: a layer not among those offered.
    """
    if len(dataset) == 0:
        raise ValueError("the data set is empty")
    layers = default_explorer_layers(model) if layers is None else [check_layer(model, name) for name in layers]
    if not layers:
        raise ValueError("layers is empty; give at least one layer name")
    class_options = _class_options(model, dataset, classes)
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
    return {"layers": list(layers), "layer": layer, "class_options": class_options, "class_id": int(class_id),
            "cell_types": cell_types, "cell_type": cell_type, "sample": int(sample),
            "channel_names": explorer_channels(len(CHANNELS)), "channel": _check_channel(channel)}


def _compare_choices(start: Mapping[str, Any], mode: str) -> list:
    """Options of the comparison's second selector for ``mode`` (Dropdown options: values or (label, id))."""
    return {"off": [], "class": list(start["class_options"]), "layer": list(start["layers"]),
            "cell type": list(start["cell_types"])}[mode]


def _option_values(options: Sequence) -> list:
    return [option[1] if isinstance(option, tuple) else option for option in options]


def _view_values(start: Mapping[str, Any], alpha: float, cmap: str, compare: str, compare_with) -> dict:
    """The drawing and comparison starting values, checked: opacity in [0, 1], a known colour map (offered
    beside :data:`CAM_COLOUR_MAPS`), a comparison mode and its second value (default: the first one that
    differs from the first view's).

    Raises:
        ValueError: an opacity outside [0, 1], an unknown comparison mode or value; KeyError: colour map.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha (the overlay's opacity) must be in [0, 1], got {alpha}")
    colour_table(cmap)
    if compare not in COMPARE_MODES:
        raise ValueError(f"compare must be one of {COMPARE_MODES}, got {compare!r}")
    values = _option_values(_compare_choices(start, compare))
    current = {"off": None, "class": start["class_id"], "layer": start["layer"], "cell type": start["cell_type"]}
    if compare_with is None and values:
        others = [value for value in values if value != current[compare]]
        compare_with = (others or values)[0]
    elif compare != "off" and compare_with not in values:
        raise ValueError(f"cannot compare with {compare_with!r}: the {compare} choices are {values}")
    cmaps = list(CAM_COLOUR_MAPS) + ([cmap] if cmap not in CAM_COLOUR_MAPS else [])
    return {"alpha": float(alpha), "cmap": cmap, "cmaps": cmaps, "compare": compare,
            "compare_with": compare_with if compare != "off" else None}


class _Adjusting:
    """``with explorer._adjusting_controls():`` control changes made inside cause no redraw of their own."""

    def __init__(self, explorer: "GradCamExplorer") -> None:
        self.explorer = explorer

    def __enter__(self) -> None:
        self.explorer._adjusting = True

    def __exit__(self, *exc_info) -> None:
        self.explorer._adjusting = False


#: Width of each channel button: room for "composite" with JupyterLab's button padding (at 72 px it read "comp…").
CHANNEL_BUTTON_WIDTH = "100px"


class GradCamExplorer:
    """The explorer's controls, picture and state; :attr:`widget` is what a notebook displays.

    Attributes:
        class_slider: ``SelectionSlider`` of target classes (value: the class id; labels name the class).
        class_search: ``Combobox`` beside it: type part of a class's label, pick it; both stay in sync.
        cell_type_dropdown: ``Dropdown`` of the data set's cell types.
        sample_slider: ``IntSlider``, index among the sites of the chosen cell type.
        channel_buttons: ``ToggleButtons``: ``composite``, ``w1``..``w6``.
        layer_dropdown: ``Dropdown`` of layer names.
        alpha_slider: ``FloatSlider``, the CAM's opacity over the image (0-1).
        cmap_dropdown: ``Dropdown`` of colour maps (:data:`CAM_COLOUR_MAPS`).
        dim_checkbox: ``Checkbox``: dim the pixels outside the cells (disabled where there are no masks).
        compare_buttons: ``ToggleButtons`` of :data:`COMPARE_MODES`; a mode other than ``off`` draws a
            second row with the value of ``compare_dropdown`` (another class, layer or cell type).
        save_button: ``Button`` that saves the picture shown as a PNG named after its settings
            (:func:`view_stem`) into :attr:`save_dir`; ``saved`` (``HTML``) says where, or why not.
        image: ``ipywidgets.Image`` holding the PNG bytes of the picture.
        info: ``HTML`` line naming the site, its label, the predicted class and the target score
            (or the error of the last redraw, in red).
        cache: the :class:`ExplorerCache`.
        renders: number of redraws so far; update_times: seconds each took (CAM, drawing and PNG).
        last_error: the exception of the last failed redraw, or None; last_saved: the last file saved.
    """

    def __init__(self, model: nn.Module, dataset, *, layers: Sequence[str] | None = None,
                 classes: Sequence[int] | Mapping[int, str] | None = None, class_id: int | None = None,
                 cell_type: str | None = None, sample: int = 0, channel: str = COMPOSITE, layer: str | None = None,
                 head: str = "logits", alpha: float = DEFAULT_ALPHA, cmap: str = DEFAULT_CMAP, dim: bool = True,
                 compare: str = "off", compare_with: Any = None, save_dir: str | Path | None = None,
                 panel_size: int = 256, cache_size: int = 256) -> None:
        from rxlib import config

        if head not in ("logits", "cosine"):
            raise ValueError(f"head must be 'logits' or 'cosine', got {head!r}")
        start = _starting_values(model, dataset, layers, classes, class_id, cell_type, sample, channel, layer)
        start.update(_view_values(start, alpha, cmap, compare, compare_with))
        self.model, self.dataset, self.head, self.panel_size = model, dataset, head, panel_size
        self.save_dir = Path(save_dir) if save_dir is not None else config.figures_dir()
        self.class_names = {value: label for label, value in start["class_options"]}
        self.cache = ExplorerCache(max_cams=cache_size)
        first = _site_position(dataset, start["cell_type"], start["sample"])
        self.has_masks = self.cache.mask(dataset, first) is not None
        self.renders, self.update_times = 0, []
        self.last_error: BaseException | None = None
        self.last_saved: Path | None = None
        self._adjusting = False
        self._build_widgets({**start, "dim": bool(dim) and self.has_masks})
        self.redraw()

    def _adjusting_controls(self) -> _Adjusting:
        return _Adjusting(self)

    def _build_widgets(self, start: dict) -> None:
        """The controls (set to ``start``), the picture, the info line, and who listens to what."""
        import ipywidgets as widgets

        self._build_site_controls(widgets, start)
        self._build_view_controls(widgets, start)
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.info = widgets.HTML()
        rows = [widgets.HBox([self.class_slider, self.class_search]), self.cell_type_dropdown, self.sample_slider,
                self.channel_buttons, self.layer_dropdown,
                widgets.HBox([self.alpha_slider, self.cmap_dropdown, self.dim_checkbox]),
                widgets.HBox([self.compare_buttons, self.compare_dropdown]),
                widgets.HBox([self.save_button, self.saved])]
        self.widget = widgets.VBox([*rows, self.image, self.info])
        self.widget.add_class("rxlib-gradcam-explorer")
        for name in _CONTROL_ATTRIBUTES:  # e.g. rxlib-gradcam-class-slider: a handle for the page's tests
            getattr(self, name).add_class("rxlib-gradcam-" + name.replace("_", "-"))
        for control in (self.class_slider, self.cell_type_dropdown, self.sample_slider, self.channel_buttons,
                        self.layer_dropdown, self.alpha_slider, self.cmap_dropdown, self.dim_checkbox,
                        self.compare_buttons, self.compare_dropdown):
            control.observe(self._on_change, names="value")
        self.class_search.observe(self._on_search, names="value")
        self.save_button.on_click(self._on_save)

    def _build_site_controls(self, widgets, start: dict) -> None:
        """What is explained: class (slider and search box), cell type, sample, channel, layer."""
        layout, style = widgets.Layout(width="480px"), {"description_width": "80px"}
        self.class_slider = widgets.SelectionSlider(
            options=start["class_options"], value=start["class_id"],
            description="class", continuous_update=False, layout=layout, style=style)
        self.class_search = widgets.Combobox(
            options=[label for label, _ in start["class_options"]], value=self.class_names[start["class_id"]],
            placeholder="type to find a class", ensure_option=True, description="find",
            layout=widgets.Layout(width="320px"), style={"description_width": "40px"})
        self.cell_type_dropdown = widgets.Dropdown(options=start["cell_types"], value=start["cell_type"],
                                                   description="cell type", layout=layout, style=style)
        self.sample_slider = widgets.IntSlider(value=start["sample"], min=0,
                                               max=len(cell_type_sites(self.dataset, start["cell_type"])) - 1,
                                               description="sample", continuous_update=False,
                                               layout=layout, style=style)
        self.channel_buttons = widgets.ToggleButtons(
            options=start["channel_names"], value=start["channel"], description="channel",
            style={**style, "button_width": CHANNEL_BUTTON_WIDTH},
            tooltips=["RGB composite of all channels"] + list(CHANNELS))
        self.layer_dropdown = widgets.Dropdown(options=start["layers"], value=start["layer"],
                                               description="layer", layout=layout, style=style)

    def _build_view_controls(self, widgets, start: dict) -> None:
        """How it is shown: opacity, colour map, dimming, the comparison, and the save button."""
        style = {"description_width": "80px"}
        self.alpha_slider = widgets.FloatSlider(value=start["alpha"], min=0.0, max=1.0, step=0.05,
                                                description="opacity", continuous_update=False, readout_format=".2f",
                                                layout=widgets.Layout(width="320px"), style=style)
        self.cmap_dropdown = widgets.Dropdown(options=start["cmaps"], value=start["cmap"], description="colours",
                                              layout=widgets.Layout(width="220px"), style={"description_width": "60px"})
        self.dim_checkbox = widgets.Checkbox(
            value=start["dim"], disabled=not self.has_masks, indent=False,
            description="dim outside cells" if self.has_masks else "no cell masks: nothing dimmed")
        self.compare_buttons = widgets.ToggleButtons(
            options=list(COMPARE_MODES), value=start["compare"], description="compare", style=style,
            tooltips=["one view", "a second class", "a second layer", "the same class in another cell type"])
        choices = _compare_choices(start, start["compare"])
        self.compare_dropdown = widgets.Dropdown(options=choices, value=start["compare_with"], description="with",
                                                 disabled=start["compare"] == "off",
                                                 layout=widgets.Layout(width="320px"), style={"description_width": "40px"})
        self._choices = {mode: _compare_choices(start, mode) for mode in COMPARE_MODES}
        self.save_button = widgets.Button(description="save PNG", icon="save",
                                          tooltip=f"save the picture shown into {self.save_dir}")
        self.saved = widgets.HTML()

    # the sample slider's range follows the cell type, the second selector the comparison mode, the
    # search box the class slider; one redraw per user action
    def _on_change(self, change: dict) -> None:
        if self._adjusting:
            return
        owner = change["owner"]
        with self._adjusting_controls():
            if owner is self.cell_type_dropdown:
                n_sites = len(cell_type_sites(self.dataset, change["new"]))
                if self.sample_slider.value > n_sites - 1:
                    self.sample_slider.value = 0
                self.sample_slider.max = n_sites - 1
            elif owner is self.compare_buttons:
                self._set_compare_choices(change["new"])
            elif owner is self.class_slider:
                self.class_search.value = self.class_names[change["new"]]
        self.redraw()

    def _set_compare_choices(self, mode: str) -> None:
        """The second selector's options for ``mode``, set to the first value that differs from the view's."""
        choices = self._choices[mode]
        current = {"off": None, "class": self.class_slider.value, "layer": self.layer_dropdown.value,
                   "cell type": self.cell_type_dropdown.value}[mode]
        values = _option_values(choices)
        self.compare_dropdown.options = choices
        self.compare_dropdown.value = next((v for v in values if v != current), values[0] if values else None)
        self.compare_dropdown.disabled = mode == "off"

    def _on_search(self, change: dict) -> None:
        if self._adjusting:
            return
        found = [value for value, label in self.class_names.items() if label == change["new"]]
        if found and found[0] != self.class_slider.value:
            self.class_slider.value = found[0]  # the slider's observer syncs and redraws

    @property
    def state(self) -> dict[str, Any]:
        """The controls' values as :func:`render_explorer_png` arguments."""
        mode = self.compare_buttons.value
        return {"class_id": self.class_slider.value, "cell_type": self.cell_type_dropdown.value,
                "sample": self.sample_slider.value, "channel": self.channel_buttons.value,
                "layer": self.layer_dropdown.value, "alpha": float(self.alpha_slider.value),
                "cmap": self.cmap_dropdown.value, "dim": bool(self.dim_checkbox.value),
                "compare": None if mode == "off" else (mode, self.compare_dropdown.value)}

    def redraw(self) -> None:
        """Recompute (or fetch from the cache) the CAMs for the controls' values and draw them.

        An error is shown in :attr:`info` and kept in :attr:`last_error`; the previous picture stays.
        The time each redraw took is appended to :attr:`update_times`.
        """
        started, state = time.perf_counter(), self.state
        try:
            png = render_explorer_png(self.model, self.dataset, **state, head=self.head, cache=self.cache,
                                      panel_size=self.panel_size, class_names=self.class_names)
            description = self._describe(state)
        except Exception as exc:  # noqa: BLE001 - shown to the user in the widget, which must stay usable
            self.last_error = exc
            self.info.value = (f"<span style='color:#b00'>{html.escape(type(exc).__name__)}: "
                               f"{html.escape(str(exc))}</span>")
            return
        self.last_error = None
        self.image.value = png
        self.renders += 1
        self.info.value = description
        self.update_times.append(time.perf_counter() - started)

    def _describe(self, state: dict[str, Any]) -> str:
        position = _site_position(self.dataset, state["cell_type"], state["sample"])
        row = _table(self.dataset).iloc[position]
        result = explorer_cam(self.model, self.dataset, position, state["class_id"], state["layer"],
                              head=self.head, cache=self.cache)
        site = row.get("site_id", f"item {position}")
        # a CAM that is zero everywhere: no feature map has positive weight for this class (eq. 11's ReLU)
        empty = " <i>(zero everywhere: no positive evidence at this layer)</i>" if not result.cam.any() else ""
        label = row.get("label", "?")
        cells = ("cells: outside dimmed (ground-truth masks)" if state["dim"] else "cells: not dimmed") \
            if self.has_masks else "no cell masks: nothing dimmed"
        second = f" | second row: {state['compare'][0]} {html.escape(str(state['compare'][1]))}" \
            if state["compare"] else ""
        return (f"site <b>{html.escape(str(site))}</b> (label {html.escape(str(label))}, "
                f"predicted {result.predicted}) | class {state['class_id']} {self.head} "
                f"{result.score:.3f} | {html.escape(state['layer'])}{empty}{second} | CAM scaled 0-1 per map "
                f"({html.escape(state['cmap'])}) | {cells}")

    def save(self) -> Path:
        """Save the picture shown as ``save_dir/<view_stem>.png`` (:func:`save_view_png`); return the path.

        Raises:
            RuntimeError: the last redraw failed, so the picture shown is not the controls' setting.
            ForeignFilesError: a file of that name that rxlib did not write is there (it is left alone).
        """
        if self.last_error is not None:
            raise RuntimeError("the current setting could not be drawn; nothing saved")
        state = self.state
        position = _site_position(self.dataset, state["cell_type"], state["sample"])
        site = _table(self.dataset).iloc[position].get("site_id", f"item{position}")
        self.last_saved = save_view_png(self.image.value, self.save_dir, view_stem(state, site))
        self.saved.value = f"saved <code>{html.escape(str(self.last_saved))}</code>"
        return self.last_saved

    def _on_save(self, _button) -> None:
        try:
            self.save()
        except Exception as exc:  # noqa: BLE001 - shown to the user in the widget, which must stay usable
            self.saved.value = (f"<span style='color:#b00'>not saved: {html.escape(type(exc).__name__)}: "
                                f"{html.escape(str(exc))}</span>")


def gradcam_explorer(model: nn.Module, dataset, *, layers: Sequence[str] | None = None,
                     classes: Sequence[int] | Mapping[int, str] | None = None, class_id: int | None = None,
                     cell_type: str | None = None, sample: int = 0, channel: str = COMPOSITE,
                     layer: str | None = None, head: str = "logits", alpha: float = DEFAULT_ALPHA,
                     cmap: str = DEFAULT_CMAP, dim: bool = True, compare: str = "off", compare_with: Any = None,
                     save_dir: str | Path | None = None, panel_size: int = 256,
                     cache_size: int = 256) -> ipywidgets.Widget:
    """An ipywidgets Grad-CAM explorer over the sites of a data set.

    Controls: target class (a slider of named classes and a search box beside it), cell type, sample
    (index among the sites of that cell type), channel (``composite`` or ``w1``..``w6``), layer, the
    overlay's opacity and colour map, dimming outside the cells (where there are cell masks), a
    comparison (``off`` / ``class`` / ``layer`` / ``cell type`` and the second value: a second row of
    panels) and a button that saves the picture shown. Moving any of them redraws the picture of
    :func:`render_explorer_png`; CAMs are cached per (site, class, layer), so the channel, opacity and
    colour map change at once.

    Args:
        model: an RxNet (or a DCMIX wrapper); it is put in eval mode only while a CAM is computed.
        dataset: an :class:`~rxlib.data.RxRx1Dataset`.
        layers: layer names offered (default :func:`default_explorer_layers`: the dense blocks and the
            last dense layer).
        classes: class ids offered, or a mapping id -> name (default: every class of the model, named by
            :func:`explorer_class_names`).
        class_id, cell_type, sample, channel, layer: the controls' starting values (defaults: the
            site's own label when offered, else the first class; the data set's first cell type; its
            first site; the composite; ``denseblock4`` / ``layer4`` when offered, else the last layer;
            notebook 07 passes its Figure 11 layer, :data:`rxlib.profiles.GRADCAM_LAYER`).
        head: ``'logits'`` or ``'cosine'``.
        alpha, cmap: the overlay's starting opacity and colour map (:data:`CAM_COLOUR_MAPS` are offered).
        dim: start with the pixels outside the cells dimmed (where the data set has cell masks).
        compare, compare_with: the starting comparison mode (:data:`COMPARE_MODES`) and second value.
        save_dir: where the save button writes (default :func:`rxlib.config.figures_dir`).
        panel_size: side of each square panel in pixels.
        cache_size: CAMs kept in memory.

    Returns:
        An ``ipywidgets.VBox`` with the controls as attributes (see :class:`GradCamExplorer`), the
        ``image`` and the ``info`` line; its ``explorer`` attribute is the :class:`GradCamExplorer`
        (cache, redraw count and times, last error, ``save()``).

    Raises:
        ValueError: a class id out of range or not offered, an unknown cell type, channel or comparison,
            an opacity outside [0, 1], an empty data set or class list.
        IndexError: a starting sample beyond the sites of its cell type.
        KeyError: a layer the model does not have, a starting layer not offered, an unknown colour map.
    """
    explorer = GradCamExplorer(model, dataset, layers=layers, classes=classes, class_id=class_id,
                               cell_type=cell_type, sample=sample, channel=channel, layer=layer, head=head,
                               alpha=alpha, cmap=cmap, dim=dim, compare=compare, compare_with=compare_with,
                               save_dir=save_dir, panel_size=panel_size, cache_size=cache_size)
    box = explorer.widget
    box.explorer = explorer
    for name in _CONTROL_ATTRIBUTES:  # so that tests and users reach the controls from the widget
        setattr(box, name, getattr(explorer, name))
    return box


_CONTROL_ATTRIBUTES = ("class_slider", "class_search", "cell_type_dropdown", "sample_slider", "channel_buttons",
                       "layer_dropdown", "alpha_slider", "cmap_dropdown", "dim_checkbox", "compare_buttons",
                       "compare_dropdown", "save_button", "saved", "image", "info")
