"""The one training run: ``rxlib train``, ``python -m rxlib.train`` and the model registry all call
:func:`train_run`, on one process or under torchrun.

A run trains a :class:`~rxlib.profiles.RunConfig` on a data root into a folder and evaluates it on the
held-out experiments::

    run.json          the resolved config, the data fingerprint and the number of processes
    history.csv       one row per epoch (see rxlib.train.loop)
    checkpoints/      per-epoch checkpoints (a killed run resumes from the newest)
    progress.json     the step the running epoch is at (rewritten every few seconds; rxlib.train.pool reports it)
    model.pt          the final weights (rxlib.train.load_trained_model reads it)
    accuracy.csv      held-out accuracy per cell type; controls.csv: the control check
    predictions.csv   the held-out predictions, written last: its presence marks a complete run

Under torchrun (``RANK``, ``WORLD_SIZE``, ... set) every process calls :func:`train_run`: it joins the
process group, the loop trains with DistributedDataParallel (``train.batch_size`` is then the batch of
each process, see :mod:`rxlib.train.distributed`), rank 0 alone writes the files and evaluates, every
rank waits for it, and the group is left at the end.

The command line (its options are declared once, in :func:`rxlib.cli.add_train_options`) goes through
:func:`run_command`: a one-line message and exit status 2 for bad input (config, data, device,
unreadable checkpoint), ``trained in X s; outputs in DIR`` and the held-out accuracy otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rxlib.io import RxRx1DataError, atomic_path, write_csv
from rxlib.profiles import RunConfig, check_device, load_config, training_threads
from rxlib.train import distributed
from rxlib.train.evaluate import held_out_predictions
from rxlib.train.loop import CheckpointError, TrainResult, train
from rxlib.train.registry import TrainedModel, config_split, data_fingerprint, model_key, models_dir

#: The errors of bad input that the command line reports in one line with exit status 2.
INPUT_ERRORS = (CheckpointError, RxRx1DataError, FileNotFoundError, ValueError)


def train_run(config: RunConfig, data_root: str | os.PathLike, folder: str | os.PathLike, *,
              progress: bool = False) -> TrainedModel | None:
    """Train ``config`` on ``data_root`` into ``folder`` (resuming from its newest checkpoint), then
    write the held-out predictions, ``accuracy.csv`` and ``controls.csv`` there.

    On the CPU it uses :func:`rxlib.profiles.cpu_threads` threads (restored afterwards). Under torchrun
    every process calls it; see the module docstring.

    Returns:
        The trained and evaluated model, on the CPU (None on the ranks other than 0 under torchrun).

    Raises:
        RxRx1DataError: the data root cannot train a model (one line, before any folder is made).
        CheckpointError: the newest checkpoint in ``folder`` is unreadable or from another config.
    """
    from rxlib.data import read_metadata
    from rxlib.data.availability import check_trainable

    data_root, folder = Path(data_root).resolve(), Path(folder)
    check_trainable(data_root, read_metadata(data_root))  # one line before any folder or store is made
    config = config.resolved(data_root)
    with distributed.process_group(config.train.get("device", "cpu")) as (ctx, device):
        config.train["device"] = device  # under torchrun on CUDA: this process's GPU
        with training_threads(device):
            return _train_and_evaluate(config, data_root, folder, ctx, progress)


def _train_and_evaluate(config: RunConfig, data_root: Path, folder: Path, ctx: distributed.DistContext | None,
                        progress: bool) -> TrainedModel | None:
    """The run inside its process group (``ctx`` None on one process): rank 0 writes and evaluates."""
    writes = ctx is None or ctx.is_main
    if writes:
        write_run_record(config, data_root, folder, world_size=1 if ctx is None else ctx.world_size)
    split = config_split(config)  # the data root's held-out split, with the config's plate subset
    train_config = config.train_config()
    result = train(train_config, split.train, split.val, split.unlabelled if train_config.pseudo_label else None,
                   out_dir=folder, resume=True, progress=progress)
    trained = _evaluate(result, config, folder, split.val) if writes else None
    distributed.barrier()  # every rank returns once rank 0's files are complete
    return trained


def write_run_record(config: RunConfig, data_root: Path, folder: Path, *, world_size: int = 1) -> Path:
    """Write ``folder/run.json``: the folder's name (the registry key), the resolved config, the data
    fingerprint and the number of processes that train."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"key": folder.name, "config": config.to_dict(), "data_fingerprint": data_fingerprint(data_root),
              "world_size": world_size}
    with atomic_path(folder / "run.json") as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2, default=str) + "\n")
    return folder / "run.json"


def _evaluate(result: TrainResult, config: RunConfig, folder: Path, held_out) -> TrainedModel:
    """Held-out predictions and their tables, written to ``folder``; the model moved to the CPU."""
    # predictions on the training device with its autocast; the model handed to notebooks lives on the CPU
    predictions = held_out_predictions(result.model, held_out, config.train_config())
    trained = TrainedModel(result.model.cpu().eval(), config, folder, result.history, predictions, True)
    write_csv(folder / "accuracy.csv", trained.accuracy)
    write_csv(folder / "controls.csv", trained.controls)
    write_csv(folder / "predictions.csv", predictions)  # last: its presence marks a complete run
    return trained


# --------------------------------------------------------------------------------------------------
# The command line: rxlib train and python -m rxlib.train


def resolve_run(config_path: str | os.PathLike, data: str | None = None, out: str | None = None,
                device: str | None = None) -> tuple[RunConfig, str, Path]:
    """Read a JSON run config and apply command-line overrides: returns (config, data_root, out_dir).

    ``out_dir`` defaults to the config's ``out_dir``, else the registry folder of the config and data.

    Raises:
        FileNotFoundError: no config file. ValueError: a bad config, or neither ``data`` nor the config
            names a data root.
    """
    config = load_config(config_path)
    data_root = data or config.data_root
    if not data_root:
        raise ValueError(f"{config_path}: no data_root in the config and no --data given")
    if device:
        config.train["device"] = device
    out_dir = Path(out or config.out_dir or models_dir() / model_key(config, data_root))
    return config, str(data_root), out_dir


def train_from_args(args: argparse.Namespace) -> TrainedModel | None:
    """The run the options of :func:`rxlib.cli.add_train_options` describe (see :func:`train_run`)."""
    config, data_root, out_dir = resolve_run(args.config, args.data, args.out, args.device)
    check_device(config.train.get("device", "cpu"), hint="--device cpu")  # one line, not a CUDA traceback
    return train_run(config, data_root, out_dir, progress=not args.quiet)


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run :func:`train_from_args` as a command named ``prog``; returns its exit status.

    0 after printing the time, the output folder and the held-out accuracy (rank 0 only under torchrun);
    2 after a one-line ``PROG: error: ...`` on stderr for bad input (:data:`INPUT_ERRORS`); 130 when
    interrupted (the same command resumes).
    """
    start = time.perf_counter()
    try:
        result = train_from_args(args)
    except INPUT_ERRORS as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if result is not None:
        print(run_summary(result, time.perf_counter() - start))
    return 0


def run_summary(result: TrainedModel, seconds: float) -> str:
    """Two lines: ``trained in X s; outputs in DIR``, then the network and its held-out accuracy."""
    overall = result.accuracy.set_index("cell_type").loc["all"]
    return (f"trained in {seconds:.1f} s; outputs in {result.folder}\n"
            f"{result.config.train['arch']} ({result.config.train['loss']} loss): held-out accuracy "
            f"{overall['acc_softmax']:.3f} (softmax head), {overall['acc_arc']:.3f} (arc head); "
            f"chance {overall['chance']:.3f}")
