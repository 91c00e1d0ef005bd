"""Data-parallel training over several processes (one per GPU, or several on a CPU) with
``torch.distributed``.

Launch with torchrun; every process runs the same command (:func:`rxlib.train.run.train_run` joins the
group with :func:`process_group`)::

    torchrun --nproc_per_node 4 -m rxlib.train --config configs/paper.json            # one node, 4 GPUs
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 -m rxlib.train --config FILE

:func:`rxlib.train.train` notices an initialised process group (see :func:`init_from_env`) and then:

- wraps the model in :class:`~torch.nn.parallel.DistributedDataParallel` (gradients averaged over the
  ranks after every step), having converted its BatchNorm layers to synchronised ones
  (:func:`convert_sync_batchnorm`): the batch statistics are taken over the global batch, so that
  ``N`` processes with ``batch_size`` each train exactly like one process with ``N * batch_size``
  (up to floating-point summation order). ``config.batch_size`` is the batch *per process*;
- shards the training set with :class:`~torch.utils.data.DistributedSampler` (one permutation per
  epoch, seeded from ``(config.seed, epoch)``; rank ``r`` takes every ``N``-th index from ``r``, so the
  union of the ranks' ``k``-th batches is the ``k``-th batch of a one-process run of the same sampler);
  the validation set is split into ``N`` disjoint strides (no padding);
- sums every metric over the ranks before it is written (:func:`all_reduce_sum`), so ``history.csv``
  describes the global batch and the whole validation set;
- writes checkpoints, ``history.csv`` and ``model.pt`` from rank 0 only (the unwrapped model's
  state dict: the files are the same as a one-process run's and either can resume the other), and
  every rank resumes from the newest checkpoint in ``out_dir``.

Backends: ``nccl`` on CUDA, ``gloo`` on the CPU (:func:`backend_for`). On the CPU torch's
``SyncBatchNorm`` is not implemented, so :class:`CpuSyncBatchNorm` (an all-reduce of per-channel sums
with autograd through it) takes its place.

Not identical to one process: the training set is padded by :class:`DistributedSampler` to a multiple
of ``N`` (a few samples repeated in an epoch); CutMix pairs are drawn within each rank's batch; the
global torch RNG (augmentation, dropout) of rank ``r > 0`` is seeded from ``(seed, epoch, r)``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the process group."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> DistContext | None:
    """The process group this process belongs to, or None when not running distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def backend_for(device: str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def launched_by_torchrun() -> bool:
    """Whether the environment variables of torchrun (``RANK``, ``WORLD_SIZE``, ...) are set."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def init_from_env(device: str) -> tuple[DistContext, str]:
    """Join the process group described by torchrun's environment variables.

    Args:
        device: the configured device (``cpu`` or ``cuda``...); on CUDA each process takes the GPU
            ``LOCAL_RANK``.

    Returns:
        The context and the device this process should train on (``cuda:LOCAL_RANK`` or ``cpu``).
    """
    backend = backend_for(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return current(), device


@contextmanager
def process_group(device: str) -> Iterator[tuple[DistContext | None, str]]:
    """The process group of a run, for the duration of a block.

    Under torchrun the group is joined here (:func:`init_from_env`) and left when the block ends, even on
    error; a group the caller has already joined is used and left to the caller; outside torchrun
    there is none.

    Yields:
        The context (None on one process) and the device this process trains on (``cuda:LOCAL_RANK``
        when torchrun starts one process per GPU, else ``device``).
    """
    ctx = current()
    if ctx is not None or not launched_by_torchrun():
        yield ctx, device
        return
    ctx, device = init_from_env(device)
    try:
        yield ctx, device
    finally:
        shutdown()


def shutdown() -> None:
    """Leave the process group (no-op when not in one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if current() is not None:
        dist.barrier()


def all_reduce_sum(values: list[float] | torch.Tensor) -> torch.Tensor:
    """Element-wise sum over the ranks (float64; the input returned as a tensor when not distributed)."""
    tensor = torch.as_tensor(values, dtype=torch.float64).clone()
    ctx = current()
    if ctx is not None and ctx.world_size > 1:
        if dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu()


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics are taken over the batches of all ranks (any device,
    any backend, 2-D ``(N, C)`` or N-D ``(N, C, ...)`` inputs).

    Per-channel sums and sums of squares are all-reduced with
    :func:`torch.distributed.nn.functional.all_reduce`, whose backward all-reduces the gradients, so
    the gradient is that of the global batch (as in torch's CUDA ``SyncBatchNorm``). Parameters and
    buffers are those of :class:`torch.nn.BatchNorm2d` (same state-dict keys). In eval mode, or
    outside a process group, it is an ordinary BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        ctx = current()
        if not self.training or ctx is None:
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        self._check_input_dim(input)
        dims = [0] + list(range(2, input.dim()))
        x = input.float()
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum(dim=dims), (x * x).sum(dim=dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)  # biased, used to normalise
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                unbiased = var.detach() * (n / (n - 1)).clamp_min(1.0)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        shape = [1, c] + [1] * (input.dim() - 2)
        out = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device | str) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` by a synchronised one, keeping its parameters and
    buffers: torch's :class:`~torch.nn.SyncBatchNorm` on CUDA, :class:`CpuSyncBatchNorm` elsewhere.

    ``RXLIB_SYNC_BATCHNORM=0`` leaves the layers as they are (per-rank batch statistics, as plain DDP
    does; cheaper, but no longer the same training as one process with the global batch).
    """
    if os.environ.get("RXLIB_SYNC_BATCHNORM", "1") == "0":
        return module
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        out = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


def shard_indices(n: int, ctx: DistContext | None) -> list[int]:
    """The indices ``rank, rank + N, ...`` of ``range(n)`` (all of them when not distributed)."""
    if ctx is None:
        return list(range(n))
    return list(range(ctx.rank, n, ctx.world_size))


__all__ = ["CpuSyncBatchNorm", "DistContext", "all_reduce_sum", "backend_for", "barrier", "convert_sync_batchnorm",
           "current", "init_from_env", "launched_by_torchrun", "process_group", "shard_indices", "shutdown"]
