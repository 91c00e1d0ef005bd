"""The smoke run on an idle machine and beside a competing CPU load: what a busy machine costs.

    python benchmarks/bench_load.py [--hogs N] [--only 02_backbone ...] [--threads T] [--out DIR]

Runs ``rxlib reproduce --profile smoke`` twice in fresh caches (synthesis and training included): once
alone, once beside ``--hogs`` processes that each keep one core busy (default: one per usable core, so
the run's fair share of the machine is a half on 2 cores). Prints the wall times and their ratio: a run
that costs a loaded machine only its share slows down by about ``(cores + hogs) / cores`` (2x with
2 hogs on 2 cores), where torch threads that spin-wait on each other slowed down eightfold and more.
``--threads`` sets ``RXLIB_TRAIN_THREADS`` for both runs (default: the package's, 1), to show the
difference. Writes one CSV row per run to ``load.csv`` (default folder ``reports/benchmarks``).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _hog() -> None:  # pragma: no cover - runs in a child process until killed
    while True:
        pass


def timed_run(only: list[str], env: dict) -> float:
    """Wall seconds of one smoke run in a fresh cache (figures and reports in throwaway folders)."""
    with tempfile.TemporaryDirectory(prefix="rxlib-load-") as tmp:
        env = {**env, "RXLIB_CACHE": str(Path(tmp) / "cache"), "MPLBACKEND": "Agg"}
        command = [sys.executable, "-m", "rxlib.cli", "reproduce", "--profile", "smoke",
                   "--figures-dir", str(Path(tmp) / "figures"), "--reports-dir", str(Path(tmp) / "reports")]
        for name in only:
            command += ["--only", name]
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    from common import write_results
    from rxlib.train.pool import usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, default=None, help="competing busy processes (default: one per core)")
    parser.add_argument("--only", action="append", default=[], help="notebooks to run (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="RXLIB_TRAIN_THREADS for both runs")
    parser.add_argument("--out", default=None, help="output folder (default reports/benchmarks)")
    args = parser.parse_args(argv)
    cores = usable_cores()
    hogs = cores if args.hogs is None else args.hogs
    env = dict(os.environ)
    if args.threads is not None:
        env["RXLIB_TRAIN_THREADS"] = str(args.threads)
    idle = timed_run(args.only, env)
    print(f"idle: {idle:.0f} s", flush=True)
    processes = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(hogs)]
    for process in processes:
        process.start()
    try:
        loaded = timed_run(args.only, env)
    finally:
        for process in processes:
            process.terminate()
    share = (cores + hogs) / cores
    print(f"beside {hogs} busy process(es) on {cores} core(s): {loaded:.0f} s, {loaded / idle:.2f}x the idle run "
          f"(a fair share of the machine would be {share:.2f}x)")
    rows = [{"benchmark": "load", "case": case, "hogs": n, "threads": env.get("RXLIB_TRAIN_THREADS", "1"),
             "notebooks": " ".join(args.only) or "all", "seconds": round(t, 1), "ratio_to_idle": round(t / idle, 3),
             "fair_share_ratio": round((cores + n) / cores, 3)}
            for case, n, t in (("idle", 0, idle), ("loaded", hogs, loaded))]
    print(f"written: {write_results('load', rows, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
