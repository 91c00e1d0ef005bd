"""``python -m rxlib.train --config FILE``: train one run config, on one process or under torchrun.

One process (the same as ``rxlib train``)::

    python -m rxlib.train --config configs/smoke.json

Several processes, one per GPU (``nccl``), or several CPU processes (``gloo``)::

    torchrun --nproc_per_node 4 -m rxlib.train --config configs/paper.json
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 8 \\
        -m rxlib.train --config configs/paper.json

Under torchrun the loop trains with DistributedDataParallel (see :mod:`rxlib.train.distributed`):
``train.batch_size`` of the config is the batch of each process. Rank 0 writes the outputs
(``history.csv``, ``checkpoints/``, ``model.pt``, then the held-out ``predictions.csv``,
``accuracy.csv`` and ``controls.csv``); run the same command again to resume a killed run.
Exit status 2 with a one-line message for bad input (config, data, unreadable checkpoint).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rxlib.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="JSON run config (see rxlib.profiles)")
    parser.add_argument("--data", default=None, help="data root (overrides data_root of the config)")
    parser.add_argument("--out", default=None, help="output folder (overrides out_dir of the config)")
    parser.add_argument("--device", default=None, help="cpu or cuda (overrides train.device; under torchrun "
                                                       "each process takes cuda:LOCAL_RANK)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> Path:
    """Train as ``args`` say; returns the output folder."""
    import torch

    from rxlib.io import atomic_path, write_csv
    from rxlib.train import distributed
    from rxlib.profiles import check_device, cpu_threads
    from rxlib.train.registry import data_fingerprint, resolve_run, train_run

    config, data_root, out_dir = resolve_run(args.config, args.data, args.out, args.device)
    check_device(config.train.get("device", "cpu"), hint="--device cpu")  # one line, not a CUDA traceback
    if not distributed.launched_by_torchrun():
        return train_run(config, data_root, out_dir, progress=not args.quiet).folder

    from rxlib.data import read_metadata
    from rxlib.data.availability import check_trainable
    from rxlib.train.registry import config_split
    from rxlib.train.evaluate import accuracy_by_cell_type, control_confidence, held_out_predictions
    from rxlib.train.loop import train

    ctx, device = distributed.init_from_env(config.train.get("device", "cpu"))
    try:
        config.train["device"] = device
        if device == "cpu":
            torch.set_num_threads(cpu_threads())
        data_root = Path(data_root).resolve()
        check_trainable(data_root, read_metadata(data_root))
        config = config.resolved(data_root)
        if ctx.is_main:
            record = {"key": out_dir.name, "config": config.to_dict(), "data_fingerprint": data_fingerprint(data_root),
                      "world_size": ctx.world_size}
            out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(out_dir / "run.json") as tmp:
                Path(tmp).write_text(json.dumps(record, indent=2, default=str) + "\n")
        split = config_split(config)  # the data root's held-out split, with the config's plate subset
        train_config = config.train_config()
        result = train(train_config, split.train, split.val, split.unlabelled if train_config.pseudo_label else None,
                       out_dir=out_dir, resume=True, progress=not args.quiet and ctx.is_main)
        if ctx.is_main:
            predictions = held_out_predictions(result.model, split.val, train_config)
            write_csv(out_dir / "accuracy.csv", accuracy_by_cell_type(predictions))
            write_csv(out_dir / "controls.csv", control_confidence(predictions))
            write_csv(out_dir / "predictions.csv", predictions)  # last: its presence marks a complete run
        distributed.barrier()
    finally:
        distributed.shutdown()
    return out_dir


def main(argv: list[str] | None = None) -> int:
    from rxlib.io import RxRx1DataError
    from rxlib.train.loop import CheckpointError

    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        out = run(args)
    except (CheckpointError, RxRx1DataError, FileNotFoundError, ValueError) as exc:
        print(f"python -m rxlib.train: error: {exc}", file=sys.stderr)
        return 2
    print(f"trained in {time.perf_counter() - start:.1f} s; outputs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
