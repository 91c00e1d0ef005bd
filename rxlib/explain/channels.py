"""Which channel matters: eq. 15 of the paper, channel occlusion and gradient x input.

Every method returns an importance per image and channel, ``(B, C)``; :func:`channel_importance_table`
scores them against the planted importances of the synthetic data set.

Eq. 15 as printed (Sharma & Krishnamurthi 2022, section 5)::

    Attention_i = || L_CAM(Image) - Image_i ||_2 ,   then max-normalised over the channels.

The text says "a higher number ... suggests that the attention map is concordant with the channel",
yet a larger distance means *less* agreement. Both readings are here: ``reading='printed'`` (the
distance itself) and ``reading='agreement'`` (one minus the root-mean-square distance, so larger means
closer). The evaluation on planted channels says which one recovers them.

The formula as printed is the default: the distance is taken between the CAM (in [0, 1]) and the
channel image *as the network sees it*, without rescaling (``scaling='literal'``). The paper does not
rescale, so this is the literal reading, even though a channel's brightness then weighs in its
distance. ``scaling='rescaled'`` min-max scales each channel to [0, 1] first, the named alternative;
:func:`channel_importances` and :func:`importance_methods` produce both (``eq15_printed`` and
``eq15_printed_rescaled``, ``eq15_agreement`` and ``eq15_agreement_rescaled``), so both appear in the
method table.

DCMIX's learnt mixing weights (:mod:`rxlib.explain.dcmix`) are a per-class answer that
:func:`channel_importance_table` scores beside these methods.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn

from rxlib.explain.cam.base import (
    Targets,
    check_images,
    default_layer,
    evaluating,
    input_gradient,
    minmax_normalise,
    on_model_device,
    score_targets,
)


def max_normalise(values: torch.Tensor | np.ndarray, eps: float = 1e-12) -> torch.Tensor | np.ndarray:
    """Divide each row of ``(B, C)`` values by its largest absolute value."""
    if isinstance(values, torch.Tensor):
        return values / values.abs().amax(dim=-1, keepdim=True).clamp_min(eps)
    values = np.asarray(values, dtype=np.float64)
    return values / np.maximum(np.abs(values).max(axis=-1, keepdims=True), eps)


def eq15_attention(
    cam: torch.Tensor,
    images: torch.Tensor,
    *,
    reading: str = "printed",
    scaling: str = "literal",
    scale_channels: bool | None = None,
) -> torch.Tensor:
    """Channel attention of eq. 15: distance between the CAM and each image channel.

    Args:
        cam: ``(B, H, W)`` or ``(H, W)`` CAM at the image's resolution, min-max normalised to [0, 1]
            (``grad_cam(..., upsample=True, normalise=True)``).
        images: ``(B, C, H, W)`` or ``(C, H, W)``; not modified.
        reading: ``'printed'``: ``Attention_i = ||L_CAM - Image_i||_2`` max-normalised, exactly as
            printed (larger = further from the CAM). ``'agreement'``: ``1 - ||L_CAM - Image_i||_2 /
            sqrt(H W)`` (one minus the RMS distance, in [0, 1] for maps in [0, 1]; negative for a
            channel further than 1 on average from the CAM, possible with ``scaling='literal'``),
            divided by its largest absolute value; larger = closer to the CAM, the meaning the
            paper's text gives.
        scaling: ``'literal'`` (default, eq. 15 as printed: the channel values as given, no
            rescaling) or ``'rescaled'`` (each channel min-max scaled to [0, 1] per image first, so
            that brightness does not decide the distance).
        scale_channels: older spelling of ``scaling``: True = ``'rescaled'``, False = ``'literal'``;
            when given it wins over ``scaling``.

    Returns:
        ``(B, C)`` (or ``(C,)`` for unbatched input) attention divided by the largest absolute value
        per image (maximum 1 whenever some value is positive).

    Raises:
        ValueError: shapes that do not match, or an unknown reading.
    """
    if reading not in ("printed", "agreement"):
        raise ValueError(f"reading must be 'printed' or 'agreement', got {reading!r}")
    if scale_channels is not None:
        scaling = "rescaled" if scale_channels else "literal"
    if scaling not in ("literal", "rescaled"):
        raise ValueError(f"scaling must be 'literal' or 'rescaled', got {scaling!r}")
    unbatched = images.ndim == 3
    if unbatched:
        images, cam = images[None], cam[None]
    check_images(images)
    if cam.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"cam of shape {tuple(cam.shape)} does not match images {tuple(images.shape)}; "
                         "upsample the CAM to the image size")
    images = images.to(device=cam.device, dtype=torch.float32)
    if scaling == "rescaled":
        b, c, h, w = images.shape
        images = minmax_normalise(images.reshape(b * c, h, w)).reshape(b, c, h, w)
    distance = torch.linalg.vector_norm(images - cam[:, None].float(), dim=(2, 3))
    if reading == "printed":
        attention = distance
    else:
        # no clamp at 0: far channels (literal scaling) keep their order instead of tying at 0
        attention = 1.0 - distance / np.sqrt(images.shape[2] * images.shape[3])
    attention = max_normalise(attention)
    return attention[0] if unbatched else attention


def occlusion_importance(
    model: nn.Module,
    images: torch.Tensor,
    cell_type: torch.Tensor | None = None,
    targets: Targets = None,
    *,
    fill: str = "mean",
    head: str = "logits",
) -> torch.Tensor:
    """Drop of the target score when one channel is replaced, for each channel.

    Args:
        model, images, cell_type, targets, head: as :func:`~rxlib.explain.cam.grad_cam`.
        fill: ``'mean'`` (the channel's own spatial mean per image: removes its structure, keeps its
            level) or ``'zero'``.

    Returns:
        ``(B, C)`` tensor: ``score(image) - score(image with channel c filled)``; larger = more important.
    """
    if fill not in ("mean", "zero"):
        raise ValueError(f"fill must be 'mean' or 'zero', got {fill!r}")
    images, cell_type = on_model_device(model, images, cell_type)
    with evaluating(model), torch.no_grad():
        # the targets are fixed on the intact images (the predicted class stays that of the intact image)
        base, target_fns = score_targets(model, images, cell_type, targets, head)
        drops = []
        for c in range(images.shape[1]):
            occluded = images.clone()
            occluded[:, c] = images[:, c].mean(dim=(1, 2), keepdim=True) if fill == "mean" else 0.0
            drops.append(base - score_targets(model, occluded, cell_type, target_fns, head)[0])
    return torch.stack(drops, dim=1)


def gradient_x_input(
    model: nn.Module,
    images: torch.Tensor,
    cell_type: torch.Tensor | None = None,
    targets: Targets = None,
    *,
    head: str = "logits",
    absolute: bool = False,
) -> torch.Tensor:
    """Gradient of the target score times the input, summed over the pixels of each channel.

    Args:
        model, images, cell_type, targets, head: as :func:`~rxlib.explain.cam.grad_cam`.
        absolute: sum ``|grad * input|`` instead of the signed product.

    Returns:
        ``(B, C)`` tensor; the input is not modified (a detached copy gets the gradient).
    """
    grad, _ = input_gradient(model, images, cell_type, targets, head=head)
    product = grad * images.to(grad.device)
    return (product.abs() if absolute else product).sum(dim=(2, 3)).detach()


# --- scoring against planted importances ------------------------------------------------------------


def planted_importance(classes: pd.DataFrame) -> pd.DataFrame:
    """The planted per-class channel importance from ``truth/classes.csv`` of the synthetic data set.

    Returns:
        DataFrame indexed by ``class_id`` with columns ``w1``..``w6``.
    """
    cols = [c for c in classes.columns if c.startswith("importance_w")]
    if not cols or "class_id" not in classes.columns:
        raise ValueError(f"classes table needs class_id and importance_w1.. columns, got {list(classes.columns)}")
    return classes.set_index("class_id")[cols].rename(columns=lambda c: c.replace("importance_", ""))


def class_importance(importance: np.ndarray | torch.Tensor, labels: Sequence[int] | np.ndarray) -> pd.DataFrame:
    """Aggregate per-image importances ``(N, C)`` per class: mean of the max-normalised rows."""
    values = np.asarray(importance.detach().cpu() if isinstance(importance, torch.Tensor) else importance, dtype=np.float64)
    labels = np.asarray(labels)
    if values.ndim != 2 or len(values) != len(labels):
        raise ValueError(f"importance {values.shape} and labels {labels.shape} do not match (need (N, C) and (N,))")
    frame = pd.DataFrame(max_normalise(values), columns=[f"w{i + 1}" for i in range(values.shape[1])])
    frame["class_id"] = labels
    return frame.groupby("class_id").mean()


def per_class_recovery(importance: np.ndarray | torch.Tensor | pd.DataFrame, labels: Sequence[int] | np.ndarray | None,
                       planted: pd.DataFrame) -> pd.DataFrame:
    """Per class, whether a method's top channel is the planted top channel and its Spearman correlation
    with the planted importance; their means are :func:`channel_importance_table`'s ``top1_agreement``
    and ``spearman_mean``, and they are the units of the verdicts' intervals
    (:func:`rxlib.explain.verdicts.channel_verdicts`).

    Args:
        importance: per image ``(N, C)`` (aggregated per class with ``labels``, :func:`class_importance`)
            or a DataFrame already indexed by class id with one column per channel (a per-class answer
            such as DCMIX weights).
        labels: class per image (ignored for a per-class DataFrame).
        planted: DataFrame indexed by class id, columns ``w1``..``wC`` (:func:`planted_importance`).
            Classes whose planted importance is constant (controls, no phenotype) are skipped.

    Returns:
        Columns ``class_id``, ``hit`` (0/1), ``spearman`` (NaN where the estimate is constant).
    """
    informative = planted[planted.std(axis=1) > 0]
    per_class = importance if isinstance(importance, pd.DataFrame) else class_importance(importance, labels)
    per_class = per_class.reindex(columns=informative.columns)
    rows = []
    for cid in informative.index.intersection(per_class.index):
        est, truth = per_class.loc[cid].to_numpy(float), informative.loc[cid].to_numpy(float)
        rows.append({"class_id": cid, "hit": float(np.argmax(est) == np.argmax(truth)),
                     "spearman": spearmanr(est, truth).statistic if np.std(est) > 0 else np.nan})
    return pd.DataFrame(rows, columns=["class_id", "hit", "spearman"])


def channel_importance_table(
    importances: dict[str, np.ndarray | torch.Tensor | pd.DataFrame],
    labels: Sequence[int] | np.ndarray | None,
    planted: pd.DataFrame,
) -> pd.DataFrame:
    """Score channel-importance methods against planted importances (:func:`per_class_recovery`).

    Args:
        importances: method name -> per-image ``(N, C)`` importances (aggregated per class with
            ``labels``), or a DataFrame already indexed by class id with one column per channel
            (a per-class answer such as DCMIX weights).
        labels: class of each image (needed for per-image arrays).
        planted: DataFrame indexed by class id, columns ``w1``..``wC`` (:func:`planted_importance`).
            Classes whose planted importance is constant (controls, no phenotype) are skipped.

    Returns:
        One row per method: ``method``, ``n_classes``, ``top1_agreement`` (fraction of classes whose
        top channel is the planted top channel), ``spearman_mean`` and ``spearman_median`` (rank
        correlation with the planted importance, per class; NaN where the estimate is constant).
    """
    rows = []
    for method, values in importances.items():
        found = per_class_recovery(values, labels, planted)
        hits, rhos = found["hit"].to_numpy(float), found["spearman"].to_numpy(float)
        rows.append({
            "method": method, "n_classes": len(found),
            "top1_agreement": float(np.mean(hits)) if len(hits) else np.nan,
            "spearman_mean": float(np.nanmean(rhos)) if np.any(np.isfinite(rhos)) else np.nan,
            "spearman_median": float(np.nanmedian(rhos)) if np.any(np.isfinite(rhos)) else np.nan,
        })
    return pd.DataFrame(rows, columns=["method", "n_classes", "top1_agreement", "spearman_mean", "spearman_median"])


def channel_importance_summary(importances: dict[str, np.ndarray | torch.Tensor | pd.DataFrame],
                               labels: Sequence[int] | np.ndarray | None) -> pd.DataFrame:
    """What each method says without a truth to score it against (real data): per method, the mean
    max-normalised importance of each channel over the classes, and how often each channel is a
    class's most important one.

    Args:
        importances, labels: as for :func:`channel_importance_table`.

    Returns:
        One row per method: ``method``, ``n_classes``, ``mean_w1``..``mean_wC`` and ``top_w1``..``top_wC``
        (share of classes whose top channel it is).
    """
    rows = []
    for method, values in importances.items():
        per_class = values if isinstance(values, pd.DataFrame) else class_importance(values, labels)
        channels = [c for c in per_class.columns if str(c).startswith("w")]
        matrix = per_class[channels].to_numpy(float)
        scaled = max_normalise(matrix)
        top = np.argmax(matrix, axis=1)
        row = {"method": method, "n_classes": len(per_class)}
        row.update({f"mean_{c}": float(scaled[:, i].mean()) for i, c in enumerate(channels)})
        row.update({f"top_{c}": float(np.mean(top == i)) for i, c in enumerate(channels)})
        rows.append(row)
    return pd.DataFrame(rows)


#: Methods computed by :func:`channel_importances`, in table order.
IMPORTANCE_METHODS: tuple[str, ...] = ("eq15_printed", "eq15_printed_rescaled", "eq15_agreement", "eq15_agreement_rescaled",
                                       "occlusion_mean", "occlusion_zero", "grad_x_input")

#: The eq. 15 methods: name -> (reading, scaling) of :func:`eq15_attention`. The unsuffixed names are
#: the literal formula (no rescaling of the channels), the default.
EQ15_METHODS: dict[str, tuple[str, str]] = {
    "eq15_printed": ("printed", "literal"), "eq15_printed_rescaled": ("printed", "rescaled"),
    "eq15_agreement": ("agreement", "literal"), "eq15_agreement_rescaled": ("agreement", "rescaled"),
}


def channel_importances(
    model: nn.Module,
    images: torch.Tensor,
    cell_type: torch.Tensor | None = None,
    targets: Targets = None,
    *,
    layer: str | nn.Module | None = None,
    methods: Sequence[str] = IMPORTANCE_METHODS,
    head: str = "logits",
) -> dict[str, torch.Tensor]:
    """Every per-image channel importance of one batch, ready for :func:`channel_importance_table`.

    Args:
        model, images, cell_type, targets, head: as :func:`~rxlib.explain.cam.grad_cam`
            (targets are usually the true classes, so that the planted phenotype is explained).
        layer: Grad-CAM layer for eq. 15; None: the architecture's default
            (:func:`~rxlib.explain.cam.default_layer`; the paper's Figure 12 uses
            ``denseblock4.denselayer24``, :func:`last_dense_layer`).
        methods: any of :data:`IMPORTANCE_METHODS`.

    Returns:
        method -> ``(B, C)`` tensor on the CPU.
    """
    from rxlib.explain.cam import grad_cam

    unknown = set(methods) - set(IMPORTANCE_METHODS)
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {IMPORTANCE_METHODS}")
    out: dict[str, torch.Tensor] = {}
    if any(m.startswith("eq15") for m in methods):
        cam = grad_cam(model, images, cell_type, targets, layer=layer, head=head, upsample=True, normalise=True)
        for name, (reading, scaling) in EQ15_METHODS.items():
            if name in methods:
                out[name] = eq15_attention(cam, images, reading=reading, scaling=scaling)
    for fill in ("mean", "zero"):
        if f"occlusion_{fill}" in methods:
            out[f"occlusion_{fill}"] = occlusion_importance(model, images, cell_type, targets, fill=fill, head=head)
    if "grad_x_input" in methods:
        out["grad_x_input"] = gradient_x_input(model, images, cell_type, targets, head=head)
    return {m: out[m].detach().cpu() for m in methods}


def last_dense_layer(model: nn.Module) -> str:
    """Name of the last dense layer of the last dense block (the paper's Figure 12 layer,
    ``denseblock4.denselayer24`` in DenseNet-161; ``denseblock4.denselayer4`` in the tiny DenseNet).

    Resolved through :func:`~rxlib.explain.cam.default_layer` (``last=True``), so a ResNet RxNet gives
    its last residual block (``layer4.1`` of a ResNet-18).

    Raises:
        ValueError: the model has no dense blocks (no known architecture).
    """
    try:
        return default_layer(model, last=True)
    except ValueError:
        raise ValueError(f"{type(getattr(model, 'inner', model)).__name__} has no dense blocks "
                         "(not an RxNet of a known family); give the layer explicitly") from None


def importance_methods(model: nn.Module, images: torch.Tensor, cell_type: torch.Tensor | None, labels,
                       *, cam_layers: dict[str, str], batch_size: int = 64,
                       methods: Sequence[str] = ("occlusion_mean", "grad_x_input"),
                       device: str | torch.device | None = None) -> dict[str, np.ndarray]:
    """:func:`channel_importances` of a whole set, in batches, for the images' own labels, with eq. 15
    at several Grad-CAM layers.

    Args:
        model: an RxNet.
        images: ``(N, C, H, W)`` normalised images; ``cell_type`` ``(N, 4)``; ``labels`` ``(N,)`` targets.
        cam_layers: ``{short name: layer}``; each adds the four eq. 15 methods of :data:`EQ15_METHODS`,
            ``eq15_printed[name]`` (the literal default), ``eq15_printed_rescaled[name]``,
            ``eq15_agreement[name]`` and ``eq15_agreement_rescaled[name]``.
        batch_size: images per pass.
        methods: the CAM-free methods of :data:`IMPORTANCE_METHODS` to add.
        device: where the passes run (the configured ``train.device``; None: where the model is); the
            model is moved back afterwards and the arrays returned are on the CPU.

    Returns:
        method -> ``(N, C)`` array.
    """
    from rxlib.train.loop import on_device

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    labels = [int(v) for v in np.asarray(labels)]
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(labels), batch_size):
        sl = slice(start, start + batch_size)
        x, ct, y = images[sl], None if cell_type is None else cell_type[sl], labels[sl]
        with on_device(model, device):
            for name, layer in cam_layers.items():
                found = channel_importances(model, x, ct, y, layer=layer, methods=tuple(EQ15_METHODS))
                for method, values in found.items():
                    parts.setdefault(f"{method}[{name}]", []).append(values.detach().cpu())
            for method, values in channel_importances(model, x, ct, y, methods=tuple(methods)).items():
                parts.setdefault(method, []).append(values.detach().cpu())
    return {name: torch.cat(values).numpy() for name, values in parts.items()}


# --- notebook 08's steps ----------------------------------------------------------------------------


def planted_importance_of(root) -> pd.DataFrame | None:
    """:func:`planted_importance` of a data root's ``truth/classes.csv``; None where the data set has
    no synthetic truth (real data: importances are reported, not scored)."""
    from pathlib import Path

    path = Path(root) / "truth" / "classes.csv"
    return planted_importance(pd.read_csv(path)) if path.is_file() else None


def eq15_layers(model: nn.Module, finer: str) -> dict[str, str]:
    """The Grad-CAM layers eq. 15 is computed at: ``'last dense layer'`` (the paper's Figure 12 layer,
    :func:`last_dense_layer`) and a ``finer`` one (named by itself), for :func:`importance_methods`."""
    return {"last dense layer": last_dense_layer(model), finer: finer}


def figure12_series(found: dict[str, np.ndarray], planted: pd.DataFrame | None, label: int, *,
                    key: str = "L") -> dict[str, np.ndarray]:
    """Figure 12's bars: eq. 15 in both readings at layer ``key`` and occlusion (``found`` from
    :func:`importance_methods` with ``cam_layers={key: ...}`` and ``occlusion_mean``), averaged over the
    images and max-normalised, and the planted importance of class ``label`` where there is one."""
    series = {"eq. 15 printed": max_normalise(found[f"eq15_printed[{key}]"].mean(axis=0)),
              "eq. 15 agreement": max_normalise(found[f"eq15_agreement[{key}]"].mean(axis=0)),
              "occlusion": max_normalise(max_normalise(found["occlusion_mean"]).mean(axis=0))}
    if planted is not None:
        series["planted"] = planted.loc[label].to_numpy()
    return series


def with_dcmix(importances: dict, dcmix: pd.DataFrame, name: str = "DCMIX (per class)") -> dict:
    """``importances`` with DCMIX's per-class weights added as method ``name`` (the weights of
    :func:`rxlib.explain.dcmix.dcmix_for_data_root`, its ``val_balanced_accuracy`` column dropped)."""
    return {**importances, name: dcmix.drop(columns="val_balanced_accuracy")}


def method_table(importances: dict, labels, planted: pd.DataFrame | None) -> pd.DataFrame:
    """The method table of notebook 08: scored against the planted channels with chance top-1
    (:func:`channel_importance_table`, column ``chance_top1`` = 1 / channels) where there are planted
    channels, else what each method says, unscored (:func:`channel_importance_summary`)."""
    if planted is None:
        return channel_importance_summary(importances, labels)
    table = channel_importance_table(importances, labels, planted)
    table.insert(2, "chance_top1", 1 / planted.shape[1])
    return table


def best_method_note(methods: pd.DataFrame, planted: pd.DataFrame | None) -> str:
    """The method with the highest mean Spearman correlation with the planted channels (of
    :func:`method_table`), or a note that nothing can be scored without planted channels."""
    if planted is None:
        return ("no planted channels in this data set: the importances above are what each method says, and no "
                "method can be scored or called right here")
    table = methods.set_index("method")
    best = table["spearman_mean"].idxmax()
    return (f"Best method by mean Spearman: {best} ({table.loc[best, 'spearman_mean']:+.2f}, top-1 "
            f"{table.loc[best, 'top1_agreement']:.2f}, chance {1 / planted.shape[1]:.2f}).")
