"""The ``rxlib`` console command: ``rxlib synth``, ``rxlib stats``, ``rxlib reproduce``, ``rxlib train``."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .io import RxRx1DataError
from .reproduce import ReproduceError


def _synth(args: argparse.Namespace) -> int:
    from .synth import generate

    start = time.perf_counter()
    out = generate(Path(args.out), profile=args.profile, seed=args.seed, spurious_cue=args.spurious_cue,
                   workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    print(f"synthetic RxRx1 ({args.profile}, seed {args.seed}) in {out} ({time.perf_counter() - start:.1f} s)")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from .data.stats import write_stats

    written = write_stats(Path(args.data), Path(args.out), scan_images=args.scan,
                          intensities=not args.no_intensities, progress=not args.quiet)
    for name, path in written.items():
        print(f"{name:>16}: {path}")
    if getattr(written, "n_dropped", 0):
        import pandas as pd

        print(f"{written.n_dropped} channel image(s) absent or unreadable, left out of the intensities; "
              f"each is listed with its error in {written['dropped_images']}:")
        dropped = pd.read_csv(written["dropped_images"])
        for error in dropped["error"].head(10):
            print(f"  {error}")
        if len(dropped) > 10:
            print(f"  ... and {len(dropped) - 10} more in {written['dropped_images']}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    rates = None
    if args.gpu_images_per_s is not None:
        from .plan import ASSUMED_RATES, Rates

        if args.gpu_images_per_s <= 0:
            raise ValueError(f"--gpu-images-per-s must be positive, got {args.gpu_images_per_s}")
        ratio = ASSUMED_RATES["infer_images_per_s"] / ASSUMED_RATES["train_images_per_s"]
        rates = Rates(args.gpu_images_per_s, args.gpu_images_per_s * ratio, "given by --gpu-images-per-s")
    reproduce(profile=args.profile, data_root=Path(args.data) if args.data else None, only=args.only,
              seed=args.seed, dry_run=args.dry_run, figures_dir=args.figures_dir, reports_dir=args.reports_dir,
              overrides=args.set or None, rates=rates, seeds=args.seeds)
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train.run import run_command

    return run_command(args, "rxlib train")


#: What ``rxlib train --help`` and ``python -m rxlib.train --help`` say the command does.
TRAIN_DESCRIPTION = (
    "Train the paper's network on the train experiments of a data root and evaluate it on the held-out test "
    "experiments, as set by a JSON config file (see configs/ and rxlib.profiles: profile, data_root, out_dir, "
    "data, train). Writes run.json, history.csv, checkpoints/epoch_NNN.pt after every epoch, model.pt, "
    "predictions.csv, accuracy.csv (per cell type) and controls.csv (negative vs positive control confidence) "
    "to the output folder. If the run is killed, the same command resumes from the last checkpoint in that "
    "folder. Under torchrun (torchrun --nproc_per_node N -m rxlib.train --config FILE) every process trains "
    "with DistributedDataParallel, train.batch_size is the batch of each process, and rank 0 writes the outputs.")


def add_train_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Declare the options of the train command on ``parser`` (``rxlib train`` and ``python -m rxlib.train``
    both call this, so that the two cannot drift); :func:`rxlib.train.run.train_from_args` reads them."""
    parser.add_argument("--config", required=True, help="JSON run config, e.g. configs/smoke.json")
    parser.add_argument("--data", default=None, help="data root (overrides data_root of the config)")
    parser.add_argument("--out", default=None, help="output folder (overrides out_dir of the config; default: the "
                                                     "model registry folder of this config under the cache)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (overrides train.device; under "
                                                        "torchrun each process takes cuda:LOCAL_RANK)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``rxlib`` command line: one sub-command per task (synth, stats, reproduce, train)."""
    parser = argparse.ArgumentParser(prog="rxlib", description=(
        "Regenerate the figures and tables of Sharma & Krishnamurthi (2022) on RxRx1 or on the "
        "embedded synthetic RxRx1 with planted ground truth."))
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synth_command(sub)
    _add_stats_command(sub)
    _add_reproduce_command(sub)
    tr = sub.add_parser("train", help="train one model from a JSON config file (resumes if interrupted)",
                        description=TRAIN_DESCRIPTION)
    add_train_options(tr)
    tr.set_defaults(func=_train)
    return parser


def _add_synth_command(sub: argparse._SubParsersAction) -> None:
    """``rxlib synth``: generate a synthetic RxRx1."""
    synth = sub.add_parser("synth", help="generate a synthetic RxRx1 with planted ground truth",
                           description="Write a synthetic RxRx1 in the official layout (metadata.csv + "
                                       "images/...) with its ground truth in truth/. Same seed, same bytes; "
                                       "an interrupted run resumes where it stopped.")
    synth.add_argument("--profile", default="smoke", help="smoke (seconds), cpu (larger), rxrx1 (RxRx1-sized, for GPUs)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--spurious-cue", action="store_true",
                       help="add a label-tied background cue to training experiments only (a model can cheat on it)")
    synth.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="processes drawing sites in parallel (default: all cores; the bytes do not depend on it)")
    synth.add_argument("--overwrite", action="store_true", help="replace a data set made with other parameters")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=_synth)


def _add_stats_command(sub: argparse._SubParsersAction) -> None:
    """``rxlib stats``: data set statistics."""
    stats = sub.add_parser("stats", help="data set statistics (Table 1, split summary, intensities)",
                           description="Read a data root (official RxRx1, Kaggle 2019/2023 or synthetic) and write "
                                       "class_sets.csv (Table 1), summary.csv, headline.csv and, for the sites "
                                       "that have images, per-image intensities and normalisation statistics.")
    stats.add_argument("--data", required=True, help="data root")
    stats.add_argument("--out", required=True, help="output folder for the CSV files")
    stats.add_argument("--scan", action="store_true",
                       help="check every image of every metadata row and write problems.csv (all problems, one pass)")
    stats.add_argument("--no-intensities", action="store_true", help="skip the per-image intensity statistics")
    stats.add_argument("--quiet", action="store_true", help="no progress bar")
    stats.set_defaults(func=_stats)


def _add_reproduce_command(sub: argparse._SubParsersAction) -> None:
    """``rxlib reproduce``: run the notebooks and regenerate every figure, or print the plan (--dry-run)."""
    rep = sub.add_parser("reproduce", help="run the notebooks with papermill and regenerate every figure",
                         description="Execute the notebooks in order with papermill; executed notebooks and HTML "
                                     "go to reports/, figures (PNG and PDF) to figures/, and reports/manifest.csv "
                                     "maps each paper item to its files. Without --data, the synthetic data set "
                                     "of the profile is generated once and used. --dry-run prints the plan: every "
                                     "model each notebook trains or reuses (architecture, epochs, images per "
                                     "epoch, budget), every pass over the data, estimated GPU-hours per notebook "
                                     "and in total, preparation CPU-hours and disk, peak host RAM, and whether "
                                     "the ImageNet weights are in the torch cache. Example: rxlib reproduce "
                                     "--profile paper --data /data/rxrx1 --dry-run --set budget.comparison_epochs=5")
    from .reproduce import EXPECTED_TIME

    rep.add_argument("--profile", default="smoke",
                     help="; ".join(f"{name}: {EXPECTED_TIME[name]}" for name in ("smoke", "paper-mini", "paper"))
                     + " (smoke: tiny DenseNet on 64x64 synthetic sites; paper-mini: the paper's code path at toy "
                       "size; paper: DenseNet-161 at 512x512)")
    rep.add_argument("--data", default=None, help="data root (default: the embedded synthetic data set)")
    rep.add_argument("--only", action="append", default=None, help="run only this notebook, e.g. 01_dataset_stats (repeatable)")
    rep.add_argument("--seed", type=int, default=0, help="seed of the synthetic data set, of the sampling and of the "
                                                        "figures (default 0)")
    rep.add_argument("--seeds", type=int, default=None,
                     help="seeds the verdicts pool: --seed and the ones after it, each with its own data set and "
                          "training; the extra seeds' verdict notebooks (03-08) run first, into "
                          "<reports>/seeds/seed<N>/ (default: 3 for the smoke profile, 1 for the others; each "
                          "seed repeats the verdict notebooks and trains their models again)")
    rep.add_argument("--figures-dir", default=None, help="figures folder (default <repo>/figures)")
    rep.add_argument("--reports-dir", default=None, help="reports folder (default <repo>/reports)")
    rep.add_argument("--dry-run", action="store_true",
                     help="print what would run and the plan with its costs (GPU-hours, RAM, weights); touch nothing")
    rep.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                     help="change a setting of the profile, e.g. train.epochs=10, train.device=cpu, "
                          "budget.comparison_epochs=2, budget.comparison_plates=[1], data.augment=false "
                          "(repeatable; values are JSON, else text)")
    rep.add_argument("--gpu-images-per-s", type=float, default=None,
                     help="training images/s of DenseNet-161 at 512x512 on one GPU, for the plan (default: "
                          "reports/benchmarks/gpu_check.csv if present, else the stated assumption)")
    rep.set_defaults(func=_reproduce)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RxRx1DataError, ReproduceError, FileNotFoundError, ValueError) as exc:
        print(f"rxlib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # permissions, a file where a folder is expected, a full disk: one line, no traceback
        if args.command not in ("synth", "stats"):
            raise
        print(f"rxlib {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rxlib {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
