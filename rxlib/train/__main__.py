"""``python -m rxlib.train --config FILE``: train one run config, on one process or under torchrun.

One process (the same as ``rxlib train``)::

    python -m rxlib.train --config configs/smoke.json

Several processes, one per GPU (``nccl``), or several CPU processes (``gloo``)::

    torchrun --nproc_per_node 4 -m rxlib.train --config configs/paper.json
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 8 \\
        -m rxlib.train --config configs/paper.json

The options are those of ``rxlib train`` (:func:`rxlib.cli.add_train_options`) and the run is the same
(:func:`rxlib.train.run.train_run`; under torchrun rank 0 writes the outputs). Run the same command again
to resume a killed run. Exit status 2 with a one-line message for bad input (config, data, device,
unreadable checkpoint).

``python -m rxlib.train --serve`` (internal, :mod:`rxlib.workers`): train one ``{"config", "data", "out"}``
job per line of stdin, the same run as the command with ``--quiet``, so that the training pool of
``rxlib reproduce`` (:mod:`rxlib.train.pool`) pays the imports once per worker rather than once per model.
"""
from __future__ import annotations

import argparse
import sys

from rxlib.cli import TRAIN_DESCRIPTION, add_train_options

PROG = "python -m rxlib.train"


def build_parser() -> argparse.ArgumentParser:
    return add_train_options(argparse.ArgumentParser(prog=PROG, description=TRAIN_DESCRIPTION))


def train_job(job: dict) -> dict:
    """One job of ``--serve``: ``{}`` when trained, ``{"error": "python -m rxlib.train: error: ..."}`` for bad
    input, the line the command would print."""
    from rxlib.train.run import INPUT_ERRORS, train_from_args

    args = build_parser().parse_args(["--config", job["config"], "--data", job["data"], "--out", job["out"], "--quiet"])
    try:
        train_from_args(args)
    except INPUT_ERRORS as exc:
        return {"error": f"{PROG}: error: {exc}"}
    return {}


def main(argv: list[str] | None = None) -> int:
    from rxlib.train.run import run_command

    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        from rxlib.workers import serve

        return serve(train_job)
    return run_command(build_parser().parse_args(argv), PROG)


if __name__ == "__main__":
    sys.exit(main())
