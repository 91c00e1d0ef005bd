"""The training loop: composite loss, CutMix and pseudo-labels, resumable from per-epoch checkpoints.

``train(config, train_dataset, val_dataset, unlabelled_dataset, out_dir=...)`` trains an
:class:`~rxlib.models.RxNet` and writes to ``out_dir``:

- ``history.csv``: one row per epoch: ``epoch``, ``lr``, ``alpha`` (pseudo-label weight), and for
  ``train`` and ``val``: ``loss`` (the optimised objective of ``config.loss``), ``loss_softmax``
  (eq. 3), ``loss_arc`` (eq. 6), ``acc_softmax`` and ``acc_arc`` (top-1 of each head), ``n``;
  plus ``seconds``. Training accuracy under CutMix counts ``lam`` for a hit on ``y_a`` and
  ``1 - lam`` for one on ``y_b``; training losses and accuracies are over labelled samples only.
- ``checkpoints/epoch_NNN.pt`` after every epoch (model, optimiser, scheduler, RNG states, history,
  config; the GradScaler's state in float16 runs only), written atomically; the newest
  ``config.keep_checkpoints`` are kept.
- ``model.pt``: the final weights and the config, for :func:`load_trained_model`.

Datasets yield dicts ``{'image': float32 (C, H, W), 'cell_type': float32 (4,), 'label': int64,
'index': int}`` (as :class:`rxlib.data.RxRx1Dataset` does). Training samples with label -1 are
skipped; the unlabelled set's labels are ignored.

Reproducibility: every random stream of an epoch (shuffling, CutMix, the global torch RNG used by
augmentation and dropout) is seeded from ``(config.seed, epoch)``, so an epoch does the same thing
whether or not the run was resumed before it, and a resumed run ends with the same weights as an
uninterrupted one. On CPU runs are bit-for-bit deterministic for a given thread count; on CUDA,
cuDNN's algorithm choice may differ slightly.

Mixed precision: ``config.amp_dtype`` is ``'bfloat16'`` (default), ``'float16'`` or ``'float32'`` (no
autocast). Training, :func:`evaluate` and :func:`predict` all enter :func:`autocast`, the one place
that turns the setting into a context. bfloat16 has float32's exponent range and needs no loss
scaling; a :class:`torch.amp.GradScaler` is created for ``'float16'`` only, and only then does a
checkpoint hold a ``scaler`` entry. The losses are computed in float32 from the heads' outputs.
Autocast and channels-last memory layout are used on CUDA only and ignored on the CPU (CPU runs stay
float32 and bit-for-bit reproducible).

Several processes: run under ``torchrun`` (``torchrun --nproc_per_node N -m rxlib.train --config FILE``)
and :func:`train` trains with DistributedDataParallel, a sharded training set, metrics summed over the
ranks and checkpoints written by rank 0; ``batch_size`` is then per process. See
:mod:`rxlib.train.distributed`.

Not stated in the paper, so chosen here: Adam (``lr`` 1e-3, ``weight_decay`` 1e-5), cosine annealing
of the learning rate per epoch to ``min_lr``, CutMix on every labelled batch (``cutmix_prob`` 1),
pseudo-labels from the softmax head (the arc head for ``loss='arc'``) of the same forward pass,
one unlabelled batch of ``batch_size`` per labelled batch, and ``alpha(t)`` evaluated at the 1-based
number ``t`` of the epoch being trained.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from rxlib.config import N_CLASSES_RXRX1
from rxlib.io import atomic_path, write_csv
from rxlib.models import RxNet, build_model
from rxlib.train import distributed
from rxlib.train.cutmix import cutmix
from rxlib.train.losses import LOSS_MODES, MixedTarget, arc_margin_loss, softmax_cross_entropy
from rxlib.train.pseudo import alpha_schedule, pseudo_labels

CHECKPOINT_FORMAT = 1
#: Smallest batch of the passes without gradients (validation, held-out predictions).
EVAL_BATCH_SIZE = 64
#: Values of ``TrainConfig.amp_dtype`` and the autocast dtype each selects (None: no autocast).
AMP_DTYPES: dict[str, torch.dtype | None] = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": None}
#: Config fields that may differ between an interrupted run and its resumption.
RESUME_MAY_DIFFER = ("device", "num_workers", "keep_checkpoints")
HISTORY_COLUMNS = (
    "epoch", "lr", "alpha",
    "train_loss", "train_loss_softmax", "train_loss_arc", "train_acc_softmax", "train_acc_arc", "train_n",
    "val_loss", "val_loss_softmax", "val_loss_arc", "val_acc_softmax", "val_acc_arc", "val_n",
    "seconds",
)


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or does not belong to this run; the message names it."""


@dataclass
class TrainConfig:
    """Everything that determines a training run.

    Attributes:
        arch: backbone (``densenet161`` in the paper; ``tiny_densenet`` for the smoke profile).
        n_classes: label space, including classes without samples (1139 for RxRx1).
        pretrained: False, True (torchvision's cache) or a weights path; see :func:`rxlib.models.build_model`.
        embedding_dim: embedding size (1024 in the paper).
        memory_efficient: checkpointed DenseNet layers.
        epochs: number of epochs.
        batch_size: labelled images per step (and unlabelled images per step with pseudo-labels).
        lr: Adam learning rate. weight_decay: Adam weight decay.
        cosine_schedule: cosine-anneal the learning rate per epoch from ``lr`` to ``min_lr``.
        loss: ``softmax`` (eq. 3), ``arc`` (eq. 6) or ``composite`` (eq. 12).
        composite_c, arc_scale, arc_margin: c, s and m (0.2, 30, 0.5 in the paper).
        cutmix: use CutMix (section 3.4); cutmix_alpha: its Beta parameter; cutmix_prob: share of batches.
        pseudo_label: use pseudo-labels on ``unlabelled_dataset`` (section 3.3).
        pseudo_t1, pseudo_t2, pseudo_alpha_f: the alpha(t) schedule (epochs, 1-based).
        seed: seeds every random stream.
        device: ``cpu``, ``cuda``, ``cuda:1`` ...
        amp_dtype: autocast dtype on CUDA: ``'bfloat16'`` (default), ``'float16'`` (with a GradScaler) or
            ``'float32'`` (None is read as ``'float32'``): no autocast. Ignored on the CPU.
        channels_last: channels-last memory format for the images and the model, on any device (on the
            CPU too: 1.4x the training steps per second of the smoke network with one thread,
            ``python -m benchmarks.bench_training``).
        num_workers: DataLoader workers.
        max_batches_per_epoch: cut epochs short (smoke runs); None for full epochs.
        keep_checkpoints: how many of the newest per-epoch checkpoints to keep.
        validate_each_epoch: score the held-out items after every epoch (the history's ``val_*`` columns,
            the training curves); False leaves those columns empty, for a model whose curves nothing shows
            (the weights are the same either way: every epoch reseeds its own random streams).
    """

    arch: str = "densenet161"
    n_classes: int = N_CLASSES_RXRX1
    pretrained: bool | str = False
    embedding_dim: int = 1024
    memory_efficient: bool = True
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-5
    cosine_schedule: bool = True
    min_lr: float = 0.0
    loss: str = "composite"
    composite_c: float = 0.2
    arc_scale: float = 30.0
    arc_margin: float = 0.5
    cutmix: bool = True
    cutmix_alpha: float = 1.0
    cutmix_prob: float = 1.0
    pseudo_label: bool = False
    pseudo_t1: int = 5
    pseudo_t2: int = 15
    pseudo_alpha_f: float = 1.0
    seed: int = 0
    device: str = "cpu"
    amp_dtype: str = "bfloat16"
    channels_last: bool = True
    num_workers: int = 0
    max_batches_per_epoch: int | None = None
    keep_checkpoints: int = 2
    validate_each_epoch: bool = True

    def __post_init__(self) -> None:
        if self.loss not in LOSS_MODES:
            raise ValueError(f"loss must be one of {LOSS_MODES}, got {self.loss!r}")
        for name in ("epochs", "batch_size", "n_classes", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.cutmix_prob <= 1.0:
            raise ValueError(f"cutmix_prob must be in [0, 1], got {self.cutmix_prob}")
        if not 0.0 <= self.composite_c <= 1.0:
            raise ValueError(f"composite_c must be in [0, 1] (eq. 12 weighs arc-margin by c, softmax by 1 - c), "
                             f"got {self.composite_c}")
        for name in ("arc_scale", "cutmix_alpha"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.arc_margin < 0 or self.weight_decay < 0 or self.min_lr < 0:
            raise ValueError(f"arc_margin, weight_decay and min_lr must be >= 0, got {self.arc_margin}, "
                             f"{self.weight_decay}, {self.min_lr}")
        if self.pseudo_label and self.pseudo_t2 <= self.pseudo_t1:
            raise ValueError(f"pseudo_t2 must exceed pseudo_t1, got T1={self.pseudo_t1}, T2={self.pseudo_t2}")
        if self.amp_dtype is None:
            self.amp_dtype = "float32"
        if self.amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}, got {self.amp_dtype!r}")
        if isinstance(self.pretrained, os.PathLike):
            self.pretrained = str(self.pretrained)

    def to_dict(self) -> dict:
        """The config as a plain dict (stored in checkpoints)."""
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (on ``config.device``), its history and files."""

    model: RxNet
    history: pd.DataFrame
    out_dir: Path
    checkpoint: Path | None
    model_path: Path | None
    completed_epochs: int
    extra: dict = field(default_factory=dict)


# --- mixed precision ---------------------------------------------------------------------------


def autocast(device: str | torch.device, amp_dtype: str | None) -> contextlib.AbstractContextManager:
    """The autocast context of every forward pass of training, :func:`evaluate` and :func:`predict`.

    Args:
        device: where the model runs; autocast is used on CUDA only (a null context elsewhere).
        amp_dtype: a key of :data:`AMP_DTYPES` (``'float32'`` or None: no autocast).

    Raises:
        ValueError: unknown ``amp_dtype`` (names it).
    """
    key = "float32" if amp_dtype is None else amp_dtype
    if key not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}, got {amp_dtype!r}")
    dtype = AMP_DTYPES[key]
    if torch.device(device).type != "cuda" or dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def needs_grad_scaler(device: str | torch.device, amp_dtype: str | None) -> bool:
    """Whether training needs loss scaling: float16 autocast on CUDA only (bfloat16 has float32's range)."""
    return torch.device(device).type == "cuda" and amp_dtype == "float16"


def _float_outputs(outputs: dict) -> dict:
    """The heads' outputs in float32 (autocast leaves them in bfloat16/float16; losses and argmax want float32)."""
    return {k: v.float() for k, v in outputs.items()}


# --- seeding -----------------------------------------------------------------------------------


def _stream_seed(seed: int, epoch: int, stream: int) -> int:
    """An independent 63-bit seed for one random stream of one epoch."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def _rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --- checkpoints -------------------------------------------------------------------------------


def checkpoint_path(out_dir: str | os.PathLike, epoch: int) -> Path:
    """Path of the checkpoint written after ``epoch`` (1-based) epochs."""
    return Path(out_dir) / "checkpoints" / f"epoch_{epoch:03d}.pt"


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest epoch number in ``out_dir/checkpoints``, or None."""
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    found = sorted(folder.glob("epoch_[0-9][0-9][0-9].pt"))
    return found[-1] if found else None


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write a checkpoint atomically (a crash never leaves a half-written file under ``path``).

    Equal states give equal bytes: torch.save is given an open file, not the temporary's random name,
    which it would otherwise record inside the archive.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing, truncated or corrupt file, or not an rxlib checkpoint (names ``path``).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip archives raise RuntimeError, others EOFError / pickle errors
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or corrupt?): {exc}. Delete it to resume from an "
            f"earlier checkpoint, or start afresh with resume=False."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an rxlib training checkpoint (format {CHECKPOINT_FORMAT})")
    return state


def load_trained_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> RxNet:
    """Rebuild a model from ``model.pt`` (or a training checkpoint) written by :func:`train`, in eval mode."""
    state = load_checkpoint(path)
    config = state["config"]  # only the fields that shape the network: files of older TrainConfigs load too
    model = build_model(
        config["arch"], config["n_classes"], embedding_dim=config["embedding_dim"],
        memory_efficient=config["memory_efficient"],
        in_channels=state.get("in_channels", 6), n_cell_types=state.get("n_cell_types", 4),
    )
    model.load_state_dict(state["model"])
    return model.to(device).eval()


# --- one epoch ---------------------------------------------------------------------------------


def _cycle(loader: DataLoader) -> Iterator[dict]:
    while True:
        yield from loader


def _labelled(batch: dict) -> dict:
    keep = batch["label"] >= 0
    if bool(keep.all()):
        return batch
    return {k: v[keep] for k, v in batch.items()}


class _Meter:
    """Sums of per-sample metrics over an epoch."""

    def __init__(self) -> None:
        self.sums = {"loss": 0.0, "loss_softmax": 0.0, "loss_arc": 0.0, "acc_softmax": 0.0, "acc_arc": 0.0}
        self.n = 0

    def add(self, objective: float, soft: torch.Tensor, arc: torch.Tensor, hits_soft: torch.Tensor,
            hits_arc: torch.Tensor) -> None:
        n = soft.shape[0]
        self.sums["loss"] += objective * n
        self.sums["loss_softmax"] += float(soft.sum())
        self.sums["loss_arc"] += float(arc.sum())
        self.sums["acc_softmax"] += float(hits_soft.sum())
        self.sums["acc_arc"] += float(hits_arc.sum())
        self.n += n

    def reduce(self) -> _Meter:
        """Sum the counts of every rank (a no-op outside a process group)."""
        if distributed.current() is not None:
            keys = list(self.sums)
            total = distributed.all_reduce_sum([self.sums[k] for k in keys] + [self.n]).tolist()
            self.sums = dict(zip(keys, total[:-1]))
            self.n = int(round(total[-1]))
        return self

    def result(self, prefix: str) -> dict:
        out = {f"{prefix}_{k}": (v / self.n if self.n else math.nan) for k, v in self.sums.items()}
        out[f"{prefix}_n"] = self.n
        return out


def _hits(scores: torch.Tensor, target: torch.Tensor | MixedTarget) -> torch.Tensor:
    pred = scores.argmax(dim=1)
    if isinstance(target, MixedTarget):
        lam = target.lam.to(scores.device)
        return lam * (pred == target.y_a).float() + (1 - lam) * (pred == target.y_b).float()
    return (pred == target).float()


def _combine(mode: str, soft: torch.Tensor, arc: torch.Tensor, c: float) -> torch.Tensor:
    if mode == "softmax":
        return soft
    if mode == "arc":
        return arc
    return c * arc + (1.0 - c) * soft


def _per_sample_losses(outputs: dict, target, config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    soft = softmax_cross_entropy(outputs["logits"], target, reduction="none")
    arc = arc_margin_loss(outputs["cosine"], target, reduction="none", s=config.arc_scale, m=config.arc_margin)
    return soft, arc


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = batch["image"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, batch["cell_type"].to(device, non_blocking=True), batch["label"].to(device, non_blocking=True)


@torch.no_grad()
def evaluate(model: RxNet, dataset: Dataset, config: TrainConfig, progress: bool = False) -> dict:
    """Losses and accuracies of both heads on the labelled items of ``dataset`` (model in eval mode).

    Returns:
        ``{'val_loss', 'val_loss_softmax', 'val_loss_arc', 'val_acc_softmax', 'val_acc_arc', 'val_n'}``.
    """
    device = torch.device(config.device)
    use_cuda = device.type == "cuda"
    was_training = model.training
    model.eval()
    meter = _Meter()
    ctx = distributed.current()
    if ctx is not None:  # disjoint strides, no padding: every item is counted once over the ranks
        dataset = Subset(dataset, distributed.shard_indices(len(dataset), ctx))
    # no gradients are kept, so batches as large as the held-out predictions' (evaluate.held_out_predictions):
    # with a training batch of 4 (paper-mini) a pass over the held-out sites took 2.7x as long
    loader = DataLoader(dataset, batch_size=max(EVAL_BATCH_SIZE, config.batch_size), shuffle=False,
                        num_workers=config.num_workers, pin_memory=use_cuda)
    try:
        for batch in tqdm(loader, desc="validate", leave=False, disable=not progress):
            batch = _labelled(batch)
            if batch["label"].numel() == 0:
                continue
            images, cell_type, labels = _to_device(batch, device, config.channels_last)
            with autocast(device, config.amp_dtype):
                outputs = _float_outputs(model(images, cell_type))
            soft, arc = _per_sample_losses(outputs, labels, config)
            objective = _combine(config.loss, soft, arc, config.composite_c)
            meter.add(float(objective.mean()), soft, arc, _hits(outputs["logits"], labels), _hits(outputs["cosine"], labels))
    finally:
        model.train(was_training)
    return meter.reduce().result("val")


@dataclass
class StepResult:
    """What :func:`train_step` returns: the optimised objective, the labelled items' per-sample losses
    of both heads, the labelled part of the outputs (float32) and the target (hard or CutMix-mixed)."""

    loss: torch.Tensor
    soft: torch.Tensor
    arc: torch.Tensor
    labelled_outputs: dict
    target: torch.Tensor | MixedTarget


def train_step(model, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None, config: TrainConfig,
               images: torch.Tensor, cell_type: torch.Tensor, labels: torch.Tensor, *, mixing: torch.Generator,
               unlabelled: dict | None = None, alpha: float = 0.0, where: str = "") -> StepResult | None:
    """One optimisation step of the loop: CutMix, the unlabelled batch, autocast forward, composite loss
    (eq. 12, plus eq. 7's pseudo-label term), backward and optimiser step (through ``scaler`` for float16).

    :func:`train` runs every step through this function; ``benchmarks/gpu_check.py`` times it.

    Args:
        model: the network (or its DDP wrapper), in training mode, on ``config.device``.
        optimizer, scaler: the run's optimiser and GradScaler (None unless float16 on CUDA).
        config: the run's :class:`TrainConfig`.
        images, cell_type, labels: the labelled batch on the device (labels >= 0).
        mixing: generator of the CutMix draws.
        unlabelled: a loader batch of unlabelled items (CPU or device), or None.
        alpha: weight of the pseudo-label term.
        where: names the step in the error of a non-finite loss.

    Returns:
        A :class:`StepResult`, or None when the step was skipped (fewer than 2 images, no labelled one,
        or another rank skipped).

    Raises:
        FloatingPointError: non-finite loss.
    """
    device = images.device
    n_lab = labels.shape[0]
    target: torch.Tensor | MixedTarget = labels
    if config.cutmix and n_lab > 1 and float(torch.rand((), generator=mixing)) < config.cutmix_prob:
        images, target = cutmix(images, labels, alpha=config.cutmix_alpha, generator=mixing)
    if unlabelled is not None:
        images = torch.cat([images, unlabelled["image"].to(device, non_blocking=True)])
        cell_type = torch.cat([cell_type, unlabelled["cell_type"].to(device, non_blocking=True)])
    skip = images.shape[0] < 2 or n_lab == 0  # BatchNorm cannot train on a single sample
    if distributed.current() is not None:  # every rank must take the same steps, or DDP's all-reduce waits forever
        skip = bool(distributed.all_reduce_sum([float(skip)])[0] > 0)
    if skip:
        return None
    if config.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(device, config.amp_dtype):
        outputs = _float_outputs(model(images, cell_type))
    lab_out = {k: v[:n_lab] for k, v in outputs.items()}
    soft, arc = _per_sample_losses(lab_out, target, config)
    loss = _combine(config.loss, soft, arc, config.composite_c).mean()
    if unlabelled is not None:  # eq. (7): mean over labelled + alpha(t) * mean over unlabelled
        unl_out = {k: v[n_lab:] for k, v in outputs.items()}
        pl = pseudo_labels(unl_out["cosine"] if config.loss == "arc" else unl_out["logits"])
        u_soft, u_arc = _per_sample_losses(unl_out, pl, config)
        loss = loss + alpha * _combine(config.loss, u_soft, u_arc, config.composite_c).mean()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {float(loss)}" + (f" at {where}" if where else ""))
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:  # float16: scale the loss so that small gradients do not underflow
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return StepResult(loss, soft, arc, lab_out, target)


#: Where a running epoch says which step it is at (in ``out_dir``, rewritten at most every
#: :data:`STEP_PROGRESS_S` seconds): ``{"epoch", "epochs", "step", "steps", "images_per_s"}``, read by
#: :mod:`rxlib.train.pool` so that a long epoch (hours in the paper profile) is not silent.
PROGRESS_FILE = "progress.json"
STEP_PROGRESS_S = 10.0


class _StepProgress:
    """Writes :data:`PROGRESS_FILE` for the running epoch (nothing when ``path`` is None)."""

    def __init__(self, path: Path | None, epoch: int, config: TrainConfig, steps: int) -> None:
        self.path, self.batch_size = path, config.batch_size
        self.info = {"epoch": epoch + 1, "epochs": config.epochs, "steps": steps}
        self.started = self.last = time.perf_counter()

    def __call__(self, step: int) -> None:
        now = time.perf_counter()
        if self.path is None or now - self.last < STEP_PROGRESS_S:
            return
        self.last = now
        rate = step * self.batch_size / max(now - self.started, 1e-9)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps({**self.info, "step": step, "images_per_s": round(rate, 1)}))


def _train_epoch(model, optimizer, scaler, config, train_dataset, unlabelled_dataset, epoch, alpha, progress,
                 step_file: Path | None = None) -> dict:
    device = torch.device(config.device)
    use_cuda = device.type == "cuda"
    ctx = distributed.current()
    # augmentation, dropout, memory-efficient layers; rank r > 0 of a process group gets its own stream
    rank_seed = _stream_seed(config.seed, epoch, 0) if ctx is None or ctx.rank == 0 else \
        _stream_seed(config.seed, epoch, 100 + ctx.rank)
    torch.manual_seed(rank_seed)
    mixing = torch.Generator().manual_seed(_stream_seed(config.seed, epoch, 2))
    loader = _epoch_loader(train_dataset, config, _stream_seed(config.seed, epoch, 1), ctx, use_cuda)
    unlabelled = None
    if alpha > 0 and unlabelled_dataset is not None and len(unlabelled_dataset):
        unlabelled = _cycle(_epoch_loader(unlabelled_dataset, config, _stream_seed(config.seed, epoch, 3), ctx, use_cuda))
    model.train()
    meter = _Meter()
    n_batches = len(loader) if config.max_batches_per_epoch is None else min(len(loader), config.max_batches_per_epoch)
    bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not progress)
    report = _StepProgress(step_file, epoch, config, n_batches)
    try:
        for step, batch in enumerate(loader):
            if step >= n_batches:
                break
            bar.update(1)
            report(step)
            batch = _labelled(batch)
            images, cell_type, labels = _to_device(batch, device, False)
            extra = next(unlabelled) if unlabelled is not None else None
            done = train_step(model, optimizer, scaler, config, images, cell_type, labels, mixing=mixing,
                              unlabelled=extra, alpha=alpha, where=f"epoch {epoch + 1}, step {step}")
            if done is None:
                continue
            loss, soft, arc, lab_out, target = done.loss, done.soft, done.arc, done.labelled_outputs, done.target
            meter.add(float(loss.detach()), soft.detach(), arc.detach(),
                      _hits(lab_out["logits"].detach(), target), _hits(lab_out["cosine"].detach(), target))
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    finally:
        bar.close()
    return meter.reduce().result("train")


def _epoch_loader(dataset: Dataset, config: TrainConfig, seed: int, ctx, use_cuda: bool) -> DataLoader:
    """A shuffling loader for one epoch: torch's RandomSampler alone, or the rank's shard of a
    DistributedSampler permutation in a process group."""
    if ctx is None:
        return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                          num_workers=config.num_workers, pin_memory=use_cuda)
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=seed % (1 << 62), drop_last=False)
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
                      pin_memory=use_cuda)


# --- the loop ----------------------------------------------------------------------------------


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Delete the temporary files of checkpoints whose writing was killed (never read: see atomic_path)."""
    for stray in [*out_dir.glob(".model.pt.*.part"), *out_dir.glob(f".{PROGRESS_FILE}.*.part"),
                  *(out_dir / "checkpoints").glob(".epoch_*.pt.*.part")]:
        stray.unlink(missing_ok=True)


def _check_resume_config(saved: dict, config: TrainConfig, path: Path) -> None:
    current = config.to_dict()
    # a setting added after the checkpoint was written: the run that wrote it had its default
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    differ = [k for k in current if k not in RESUME_MAY_DIFFER and saved.get(k, defaults[k]) != current[k]]
    if differ:
        details = ", ".join(f"{k}: {saved.get(k, defaults[k])!r} -> {current[k]!r}" for k in differ)
        raise CheckpointError(
            f"checkpoint {path} was written with a different config ({details}); use another out_dir or resume=False"
        )


@dataclass
class _Training:
    """What a run trains and checkpoints: the model (unwrapped), its optimiser, schedule and GradScaler."""

    model: RxNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None

    def checkpoint_state(self, config: TrainConfig, records: list[dict]) -> dict:
        """The checkpoint after the last epoch of ``records``: everything :func:`_resume` restores."""
        state = {
            "format": CHECKPOINT_FORMAT, "config": config.to_dict(), "epoch": records[-1]["epoch"],
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": _rng_states(), "history": records,
            "in_channels": self.model.in_channels, "n_cell_types": self.model.n_cell_types,
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def model_state(self, config: TrainConfig, epoch: int) -> dict:
        """The content of ``model.pt``: the weights and the config (:func:`load_trained_model` reads it)."""
        return {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "epoch": epoch,
                "model": self.model.state_dict(), "in_channels": self.model.in_channels,
                "n_cell_types": self.model.n_cell_types}


def _build_training(config: TrainConfig, device: torch.device, ctx) -> _Training:
    """The model (seeded from ``config.seed``; synchronised BatchNorm in a process group) on ``device``,
    Adam, the learning-rate schedule and a GradScaler for float16 on CUDA."""
    torch.manual_seed(config.seed)  # model initialisation
    model = build_model(config.arch, config.n_classes, pretrained=config.pretrained,
                        embedding_dim=config.embedding_dim, memory_efficient=config.memory_efficient)
    if ctx is not None:
        model = distributed.convert_sync_batchnorm(model, device)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.cosine_schedule:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.min_lr)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device, config.amp_dtype) else None
    return _Training(model, optimizer, scheduler, scaler)


def _resume(training: _Training, config: TrainConfig, out_dir: Path) -> tuple[int, list[dict], Path | None]:
    """Restore ``training`` and the RNG states from the newest checkpoint in ``out_dir``, if any.

    Returns:
        The number of epochs done, the history so far and the checkpoint read (0, [], None without one).
    """
    checkpoint = latest_checkpoint(out_dir)
    if checkpoint is None:
        return 0, [], None
    state = load_checkpoint(checkpoint)
    _check_resume_config(state["config"], config, checkpoint)
    training.model.load_state_dict(state["model"])
    training.optimizer.load_state_dict(state["optimizer"])
    training.scheduler.load_state_dict(state["scheduler"])
    if training.scaler is not None and state.get("scaler"):  # absent unless the run trained in float16
        training.scaler.load_state_dict(state["scaler"])
    _set_rng_states(state["rng"])
    return state["epoch"], list(state["history"]), checkpoint


def _data_parallel(model: RxNet, device: torch.device, ctx) -> torch.nn.Module:
    """What the steps run: the model itself, or its DistributedDataParallel wrapper in a process group."""
    if ctx is None:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index if device.index is not None else 0] if device.type == "cuda" else None)


def _run_epoch(training: _Training, net: torch.nn.Module, config: TrainConfig, datasets: tuple, epoch: int,
               progress: bool, step_file: Path | None = None) -> dict:
    """Train epoch ``epoch`` (0-based), validate, step the schedule; returns its history row."""
    train_dataset, val_dataset, unlabelled_dataset = datasets
    started = time.perf_counter()
    t = epoch + 1
    alpha = alpha_schedule(t, config.pseudo_t1, config.pseudo_t2, config.pseudo_alpha_f) if config.pseudo_label else 0.0
    row = {"epoch": t, "lr": training.optimizer.param_groups[0]["lr"], "alpha": alpha}
    row.update(_train_epoch(net, training.optimizer, training.scaler, config, train_dataset, unlabelled_dataset,
                            epoch, alpha, progress, step_file))
    row.update(evaluate(training.model, val_dataset, config, progress)
               if val_dataset is not None and config.validate_each_epoch else _Meter().result("val"))
    training.scheduler.step()
    row["seconds"] = time.perf_counter() - started
    return row


def _write_epoch(training: _Training, config: TrainConfig, out_dir: Path, records: list[dict]) -> None:
    """Write the checkpoint of the last epoch of ``records`` and ``history.csv``; remove the checkpoints
    older than the newest ``config.keep_checkpoints``."""
    save_checkpoint(checkpoint_path(out_dir, records[-1]["epoch"]), training.checkpoint_state(config, records))
    write_csv(out_dir / "history.csv", pd.DataFrame(records, columns=list(HISTORY_COLUMNS)))
    for old in sorted((out_dir / "checkpoints").glob("epoch_[0-9][0-9][0-9].pt"))[:-config.keep_checkpoints]:
        old.unlink()


def train(
    config: TrainConfig,
    train_dataset: Dataset,
    val_dataset: Dataset | None = None,
    unlabelled_dataset: Dataset | None = None,
    *,
    out_dir: str | os.PathLike,
    resume: bool = True,
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train an :class:`~rxlib.models.RxNet` as in the paper; see the module docstring for the outputs.

    Args:
        config: the run's :class:`TrainConfig`.
        train_dataset: labelled training items (label -1 items are skipped).
        val_dataset: held-out items for the ``val_*`` columns (None: those columns are NaN).
        unlabelled_dataset: items for pseudo-labelling (used when ``config.pseudo_label``).
        out_dir: folder for ``history.csv``, ``checkpoints/`` and ``model.pt``.
        resume: continue from the newest checkpoint in ``out_dir`` if there is one.
        stop_after_epoch: stop (as if interrupted) once this many epochs are complete; the run can
            be resumed later. The learning-rate schedule still spans ``config.epochs``.
        progress: show tqdm progress bars.

    Returns:
        A :class:`TrainResult`.

    Raises:
        CheckpointError: the newest checkpoint is unreadable or from a different config.
        ValueError: ``pseudo_label`` without an unlabelled dataset.
    """
    if config.pseudo_label and unlabelled_dataset is None:
        raise ValueError("config.pseudo_label is True but no unlabelled_dataset was given")
    out_dir, device, ctx = Path(out_dir), torch.device(config.device), distributed.current()
    writes = ctx is None or ctx.is_main  # only rank 0 writes files
    training = _build_training(config, device, ctx)
    if writes:
        _remove_stale_temporaries(out_dir)
    start_epoch, records, checkpoint = _resume(training, config, out_dir) if resume else (0, [], None)
    net = _data_parallel(training.model, device, ctx)
    last_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    for epoch in range(start_epoch, last_epoch):
        records.append(_run_epoch(training, net, config, (train_dataset, val_dataset, unlabelled_dataset), epoch,
                                  progress and writes, out_dir / PROGRESS_FILE if writes else None))
        checkpoint = checkpoint_path(out_dir, epoch + 1)
        if writes:
            _write_epoch(training, config, out_dir, records)

    completed = records[-1]["epoch"] if records else 0
    model_path = out_dir / "model.pt" if completed >= config.epochs else None
    if model_path is not None and writes:
        save_checkpoint(model_path, training.model_state(config, completed))
    distributed.barrier()  # every rank returns once rank 0's files are complete
    history = pd.DataFrame(records, columns=list(HISTORY_COLUMNS))
    # handed on in the default memory format, as the registry loads it from model.pt (channels-last only trains faster)
    model = training.model.to(memory_format=torch.contiguous_format)
    return TrainResult(model, history, out_dir, checkpoint, model_path, completed)


@contextlib.contextmanager
def on_device(model: torch.nn.Module, device: str | torch.device | None):
    """Run a block with ``model`` on ``device`` (None: where it is) and move it back afterwards, so that
    the passes after training (Grad-CAMO, channel importance, predictions) run on the configured device
    while the notebooks keep their models on the CPU."""
    home = next(model.parameters()).device
    target = home if device is None else torch.device(device)
    model.to(target)
    try:
        yield target
    finally:
        model.to(home)


@torch.no_grad()
def predict(model: RxNet, dataset: Dataset, batch_size: int = 32, device: str | torch.device | None = None,
            num_workers: int = 0, progress: bool = False, *, amp_dtype: str | None = None,
            channels_last: bool = False) -> dict[str, np.ndarray]:
    """Embeddings and both heads' scores for every item (model in eval mode), e.g. for Figures 7-9.

    Batched through a DataLoader (``pin_memory`` on CUDA) under the same :func:`autocast` as training;
    the arrays returned are float32 whatever the autocast dtype.

    Args:
        model: the network; its mode and device are restored afterwards.
        dataset: items as :class:`rxlib.data.RxRx1Dataset` yields them.
        batch_size: items per forward pass.
        device: where to run (``config.device`` after training); None: where the model is. The model
            is moved there for the call and moved back afterwards.
        num_workers: DataLoader workers (``config.num_workers``).
        progress: tqdm bar.
        amp_dtype: autocast dtype on CUDA (``config.amp_dtype``); None or ``'float32'``: no autocast.
        channels_last: channels-last images and model (``config.channels_last``).

    Returns:
        ``{'embedding': (N, D), 'logits': (N, K), 'cosine': (N, K), 'label': (N,), 'index': (N,)}``.
    """
    home = next(model.parameters()).device
    device = home if device is None else torch.device(device)
    use_cuda = device.type == "cuda"
    memory_format = _memory_format(model) if channels_last else None
    was_training = model.training
    model.eval()
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    parts: dict[str, list] = {k: [] for k in ("embedding", "logits", "cosine", "label", "index")}
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=use_cuda)
    try:
        for batch in tqdm(loader, desc="predict", leave=False, disable=not progress):
            images, cell_type, _ = _to_device(batch, device, channels_last)
            with autocast(device, amp_dtype):
                out = model(images, cell_type)
            for key in ("embedding", "logits", "cosine"):
                parts[key].append(out[key].float().cpu().numpy())
            parts["label"].append(torch.as_tensor(batch["label"]).numpy())
            parts["index"].append(torch.as_tensor(batch["index"]).numpy())
    finally:
        model.train(was_training)
        model.to(home)
        if memory_format is not None:
            model.to(memory_format=memory_format)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _memory_format(model: torch.nn.Module) -> torch.memory_format | None:
    """The memory format of the model's first convolution weight (to restore it after :func:`predict`)."""
    for param in model.parameters():
        if param.dim() == 4:
            return torch.channels_last if param.is_contiguous(memory_format=torch.channels_last) \
                and not param.is_contiguous() else torch.contiguous_format
    return None
