"""DCMIX (Learning Channel Importance for High Content Imaging with Interpretable Deep Input Channel
Mixing): the channel-mixing layer, and training it cheaply, one mixing layer per class.

DCMIX puts a trainable alpha-compositing layer (:class:`ChannelMixing`: non-negative weights summing
to one, a softmax over learnable logits) in front of a network (:class:`DCMixNet`,
:func:`build_dcmix_model`); after training, the weights say which input channels the prediction
needs. Trained over all classes at once it gives one importance vector for the whole data set; the
planted importances of the synthetic data are per class. So here one small DCMIX network per class
learns to tell that class from the negative control (untreated wells) through a single mixed channel:
its mixing weights are the channels in which the class differs from untreated cells, the question the
planted importances answer (scored by :func:`rxlib.explain.channels.channel_importance_table`).

The network behind the mixing layer is :class:`SmallConvNet` (three 3x3 convolutions): a few hundred
steps per class take seconds on a CPU.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from rxlib.explain.sites import site_batch


# --- the mixing layer -------------------------------------------------------------------------------


class ChannelMixing(nn.Module):
    """Alpha compositing of input channels into ``out_channels`` mixtures with learnt weights.

    ``mixed_j = sum_i w_ji x_i`` with ``w_j = softmax(logits_j)``, so the weights of each mixture are
    non-negative and sum to one. Starts uniform (all logits zero) unless ``init='identity'``.

    Args:
        in_channels: channels of the image (6).
        out_channels: mixtures fed to the network.
        temperature: softmax temperature (lower = sharper weights).
        init: ``'uniform'`` or ``'identity'`` (mixture j starts near channel j; needs equal counts).
    """

    def __init__(self, in_channels: int = 6, out_channels: int = 1, *, temperature: float = 1.0, init: str = "uniform") -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or temperature <= 0:
            raise ValueError(f"bad ChannelMixing sizes: in {in_channels}, out {out_channels}, temperature {temperature}")
        self.in_channels, self.out_channels, self.temperature = in_channels, out_channels, temperature
        logits = torch.zeros(out_channels, in_channels)
        if init == "identity":
            if in_channels != out_channels:
                raise ValueError("init='identity' needs in_channels == out_channels")
            logits += 4.0 * torch.eye(in_channels)
        elif init != "uniform":
            raise ValueError(f"init must be 'uniform' or 'identity', got {init!r}")
        self.logits = nn.Parameter(logits)

    def weights(self) -> torch.Tensor:
        """``(out_channels, in_channels)`` mixing weights; each row non-negative, summing to 1."""
        return torch.softmax(self.logits / self.temperature, dim=1)

    def importance(self) -> torch.Tensor:
        """``(in_channels,)`` channel importance: the mixing weights averaged over mixtures (sums to 1)."""
        return self.weights().mean(dim=0).detach()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.in_channels:
            raise ValueError(f"ChannelMixing expects (B, {self.in_channels}, H, W), got {tuple(images.shape)}")
        return torch.einsum("oc,bchw->bohw", self.weights().to(images.dtype), images)


class DCMixNet(nn.Module):
    """A network with a DCMIX :class:`ChannelMixing` layer in front.

    The mixing layer maps ``in_channels`` image channels to the ``inner.in_channels`` inputs of the
    wrapped network (build it with ``build_model(arch, n, in_channels=k)`` for k mixtures; k = 1 puts
    the most pressure on the weights). ``forward(images, *rest)`` calls ``inner(mix(images), *rest)``,
    so the cell type is passed through and the output is the inner network's.

    Args:
        inner: the network (an RxNet or any module with ``in_channels``, or give ``out_channels``).
        in_channels: image channels (6).
        out_channels: mixtures; default ``inner.in_channels``.
        **mixing_kwargs: passed to :class:`ChannelMixing`.
    """

    def __init__(self, inner: nn.Module, in_channels: int = 6, out_channels: int | None = None, **mixing_kwargs) -> None:
        super().__init__()
        if out_channels is None:
            if not hasattr(inner, "in_channels"):
                raise ValueError(f"{type(inner).__name__} has no in_channels; give out_channels")
            out_channels = int(inner.in_channels)
        self.in_channels = in_channels
        self.mix = ChannelMixing(in_channels, out_channels, **mixing_kwargs)
        self.inner = inner

    def forward(self, images: torch.Tensor, *args, **kwargs):
        return self.inner(self.mix(images), *args, **kwargs)

    def channel_importance(self) -> torch.Tensor:
        """``(in_channels,)`` learnt channel importance (sums to 1)."""
        return self.mix.importance()


def build_dcmix_model(arch: str, n_classes: int, *, in_channels: int = 6, n_mixtures: int = 1, **model_kwargs) -> DCMixNet:
    """``build_model(arch, n_classes, in_channels=n_mixtures)`` behind a DCMIX layer from ``in_channels``."""
    from rxlib.models import build_model

    return DCMixNet(build_model(arch, n_classes, in_channels=n_mixtures, **model_kwargs), in_channels=in_channels)


# --- per-class training ----------------------------------------------------------------------------

#: Images per forward pass when scoring a trained network on whole images.
_EVAL_BATCH = 8


class SmallConvNet(nn.Module):
    """Three 3x3 convolutions with ReLU and pooling, global average and max pooling, a linear head.

    Args:
        in_channels: input channels (the DCMIX mixtures).
        n_classes: outputs.
        width: channels of the first convolution (doubled in the second and third).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.head = nn.Linear(4 * width, n_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = self.features(images)
        return self.head(torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1))


def normalised_images(dataset, positions: Sequence[int] | np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """Items of a data set as one float tensor ``(n, C, H, W)`` (as the models see them) and their labels
    (:func:`rxlib.explain.sites.site_batch` of the two fields).

    Args:
        dataset: items with ``image`` and ``label``.
        positions: the items to read (default: all of them; only for small data sets, since the
            result holds every image as float32).
    """
    batch = site_batch(dataset, positions, keys=("image", "label"))
    return batch["image"], batch["label"].numpy().astype(np.int64)


def class_sample(labels: Sequence[int] | np.ndarray, cid: int, n: int, seed: int = 0) -> np.ndarray:
    """Up to ``n`` positions of the items of class ``cid`` (all when it has at most ``n``), sorted.

    Deterministic for a seed; the draw for one class does not depend on the other classes.
    """
    positions = np.flatnonzero(np.asarray(labels) == cid)
    if len(positions) <= n:
        return positions
    rng = np.random.default_rng([seed, int(cid) + 1])
    return np.sort(rng.choice(positions, size=n, replace=False))


def train_dcmix_binary(positives: torch.Tensor, negatives: torch.Tensor, *, steps: int = 100,
                       batch_size: int = 32, crop: int | None = 32, lr: float = 3e-3, mix_lr: float = 0.05,
                       width: int = 8, seed: int = 0) -> DCMixNet:
    """Train a one-mixture DCMIX network to tell ``positives`` from ``negatives``.

    Batches are half positives, half negatives, with random flips and one random ``crop`` x ``crop``
    window per batch (the phenotypes are per cell, so a window keeps them at full resolution for a
    quarter of the cost; the network pools globally and is applied to whole images afterwards). The
    mixing logits learn with their own (larger) rate ``mix_lr``, since they start uniform and receive
    small gradients.

    Args:
        positives, negatives: ``(N, C, H, W)`` normalised images.
        steps: optimiser steps.
        batch_size: images per step (half of each kind).
        crop: training window size (None: whole images).
        lr, mix_lr: Adam learning rates of the network and of the mixing logits.
        width: channels of :class:`SmallConvNet`.
        seed: seeds the initialisation and the batches.

    Returns:
        The trained :class:`DCMixNet` in eval mode (``channel_importance()`` gives the weights).
    """
    if positives.ndim != 4 or negatives.ndim != 4 or positives.shape[1:] != negatives.shape[1:]:
        raise ValueError(f"positives {tuple(positives.shape)} and negatives {tuple(negatives.shape)} must be "
                         "(N, C, H, W) with the same C, H, W")
    if len(positives) < 2 or len(negatives) < 2:
        raise ValueError(f"need at least two images of each kind, got {len(positives)} and {len(negatives)}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    # channels-last: 1.5x the steps per second on a CPU (max pooling above all), the same on a GPU
    model = DCMixNet(SmallConvNet(1, 2, width), in_channels=positives.shape[1]).to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam([
        {"params": model.inner.parameters(), "lr": lr},
        {"params": model.mix.parameters(), "lr": mix_lr},
    ])
    half = batch_size // 2
    target = torch.cat([torch.ones(half, dtype=torch.long), torch.zeros(half, dtype=torch.long)])
    model.train()
    for _ in range(steps):
        pos = torch.randint(len(positives), (half,), generator=gen)
        neg = torch.randint(len(negatives), (half,), generator=gen)
        window = (slice(None), slice(None))
        if crop is not None and crop < min(positives.shape[-2:]):
            top, left = (int(torch.randint(size - crop + 1, (), generator=gen)) for size in positives.shape[-2:])
            window = (slice(top, top + crop), slice(left, left + crop))
        # index and crop in one step: only the windows are copied, never whole images
        x = torch.cat([positives[(pos, slice(None), *window)], negatives[(neg, slice(None), *window)]])
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(-1)
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(-2)
        x = x.contiguous(memory_format=torch.channels_last)
        loss = nn.functional.cross_entropy(model(x), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.to(memory_format=torch.contiguous_format).eval()


def dcmix_per_class(images: torch.Tensor, labels: Sequence[int] | np.ndarray, classes: Sequence[int],
                    control: int, *, val: tuple[torch.Tensor, np.ndarray] | None = None,
                    **train_kwargs) -> pd.DataFrame:
    """Per-class DCMIX channel weights: one :func:`train_dcmix_binary` network per class versus ``control``.

    Args:
        images: ``(N, C, H, W)`` normalised training images; ``labels`` their classes.
        classes: the classes to explain (those with training images).
        control: the class of the negative control.
        val: optional held-out ``(images, labels)``; adds the balanced accuracy of each binary network.
        **train_kwargs: passed to :func:`train_dcmix_binary`.

    Returns:
        DataFrame indexed by ``class_id`` with ``w1``..``wC`` (the learnt weights, summing to 1) and,
        with ``val``, ``val_balanced_accuracy``.
    """
    labels = np.asarray(labels)
    negatives = images[torch.from_numpy(labels == control)]
    rows = []
    for cid in classes:
        if cid == control:
            continue
        positives = images[torch.from_numpy(labels == cid)]
        if len(positives) < 2:
            continue
        model = train_dcmix_binary(positives, negatives, **train_kwargs)
        row = {"class_id": int(cid), **{f"w{i + 1}": float(w) for i, w in enumerate(model.channel_importance())}}
        if val is not None:
            row["val_balanced_accuracy"] = _balanced_accuracy(model, val[0], np.asarray(val[1]), cid, control)
        rows.append(row)
    if not rows:
        raise ValueError("no class had training images besides the control")
    return pd.DataFrame(rows).set_index("class_id")


def dcmix_per_class_streaming(train, classes: Sequence[int], control: int, *, val=None,
                              sites_per_class: int = 128, seed: int = 0, **train_kwargs) -> pd.DataFrame:
    """:func:`dcmix_per_class` reading a bounded sample of each class through data sets.

    For each class in turn, at most ``sites_per_class`` of its training items and as many
    negative-control items (drawn with :func:`class_sample`, fixed for a seed) are read from
    ``train``, a network is trained and its weights kept; then the images are dropped. Memory holds
    ``2 * sites_per_class`` float32 images at a time (at 512x512, 128 per class: 1.6 GB), whatever the
    number of classes or the size of the splits; held-out items are scored in batches of 8. Where
    every class and the control have at most ``sites_per_class`` items, all are used and the
    weights equal those of :func:`dcmix_per_class` on the stacked images.

    Args:
        train: training items (an :class:`~rxlib.data.RxRx1Dataset`: ``table`` with ``label``).
        classes, control: as :func:`dcmix_per_class`.
        val: held-out data set; adds ``val_balanced_accuracy`` (on at most ``sites_per_class`` items
            of the class and of the control).
        sites_per_class: the cap per class and per kind.
        seed: seeds the samples and the training (``train_kwargs['seed']`` overrides the latter).
    """
    labels = train.table["label"].to_numpy()
    negatives, _ = normalised_images(train, class_sample(labels, control, sites_per_class, seed))
    val_labels = val.table["label"].to_numpy() if val is not None else None
    val_negatives = class_sample(val_labels, control, sites_per_class, seed) if val is not None else None
    train_kwargs.setdefault("seed", seed)
    rows = []
    for cid in classes:
        if cid == control:
            continue
        chosen = class_sample(labels, cid, sites_per_class, seed)
        if len(chosen) < 2:
            continue
        positives, _ = normalised_images(train, chosen)
        model = train_dcmix_binary(positives, negatives, **train_kwargs)
        del positives
        row = {"class_id": int(cid), **{f"w{i + 1}": float(w) for i, w in enumerate(model.channel_importance())}}
        if val is not None:
            held = class_sample(val_labels, cid, sites_per_class, seed)
            row["val_balanced_accuracy"] = _balanced_accuracy_of_items(model, val, held, val_negatives)
        rows.append(row)
    if not rows:
        raise ValueError("no class had training images besides the control")
    return pd.DataFrame(rows).set_index("class_id")


@torch.no_grad()
def _balanced_accuracy_of_items(model: nn.Module, dataset, positives: np.ndarray, negatives: np.ndarray,
                                batch_size: int = _EVAL_BATCH) -> float:
    """Balanced accuracy on items of ``dataset`` (class 1: ``positives``, 0: ``negatives``), read in batches."""
    scores = []
    for value, positions in ((1, positives), (0, negatives)):
        if len(positions) == 0:
            return float("nan")
        hits = 0
        for start in range(0, len(positions), batch_size):
            images, _ = normalised_images(dataset, positions[start:start + batch_size])
            hits += int((model(images).argmax(dim=1) == value).sum())
        scores.append(hits / len(positions))
    return float(np.mean(scores))


@torch.no_grad()
def _balanced_accuracy(model: nn.Module, images: torch.Tensor, labels: np.ndarray, cid: int, control: int) -> float:
    scores = []
    for value, kind in ((1, cid), (0, control)):
        chosen = torch.from_numpy(np.flatnonzero(labels == kind))
        if len(chosen) == 0:
            return float("nan")
        hits = sum(int((model(images[chosen[i:i + _EVAL_BATCH]]).argmax(dim=1) == value).sum())
                   for i in range(0, len(chosen), _EVAL_BATCH))
        scores.append(hits / len(chosen))
    return float(np.mean(scores))


#: ``sites_per_class`` bounds the images read per class (and per kind: class, control, held-out).
DCMIX_SETTINGS: dict = {"steps": 100, "batch_size": 32, "crop": 32, "lr": 3e-3, "mix_lr": 0.05, "width": 8, "seed": 0,
                        "sites_per_class": 128}


def dcmix_for_data_root(data_root: str | Path, *, cache: bool = True, **settings) -> pd.DataFrame:
    """Per-class DCMIX weights (:func:`dcmix_per_class`) of a data set (real or synthetic), trained on its
    training experiments against the negative control, scored on its held-out experiments
    (:func:`dcmix_per_class_streaming`: at most ``sites_per_class`` sites of each class and of the
    control are read, through the lazy :func:`rxlib.data.splits.split_sites` data sets).

    The result is kept in the model registry (:func:`rxlib.train.registry.cached_table`), so later
    runs on the same data and settings read it back.

    Args:
        data_root: the data set (its ``truth/classes.csv``, or the metadata, names the negative control).
        cache: read and write the registry.
        **settings: overrides of :data:`DCMIX_SETTINGS`.
    """
    from rxlib.data import read_metadata
    from rxlib.data.splits import split_sites
    from rxlib.train.registry import cached_table

    unknown = set(settings) - set(DCMIX_SETTINGS)
    if unknown:
        raise ValueError(f"unknown DCMIX settings {sorted(unknown)}; known: {sorted(DCMIX_SETTINGS)}")
    settings = {**DCMIX_SETTINGS, **settings}

    def compute() -> pd.DataFrame:
        table = read_metadata(data_root)
        controls = table.loc[table["well_type"] == "negative_control", "label"].unique()
        if len(controls) != 1:
            raise ValueError(f"{data_root}: expected one negative-control class, found {sorted(controls)}")
        train = split_sites(data_root, "train", table=table)
        val = split_sites(data_root, "validation", table=table)
        classes = sorted(set(train.table["label"].tolist()))
        return dcmix_per_class_streaming(train, classes, int(controls[0]), val=val, **settings)

    if not cache:
        return compute()
    return cached_table("dcmix_per_class", {"method": "one-vs-negative-control", **settings}, data_root, compute)
