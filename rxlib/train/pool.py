"""Train every model a run needs before its notebooks start, several at once, one thread each.

``rxlib reproduce`` collects the jobs of the notebooks it is about to run, for every seed
(:func:`planned_jobs`), and trains them in one pool (:func:`train_jobs`). Models already
in the registry are skipped; each of the others is trained by ``python -m rxlib.train`` (the one training
run, :mod:`rxlib.train.run`) into its registry folder, several at a time, so that the notebooks then only
load them.

Why processes with one thread each, rather than one process with a thread per core:

- **Speed on an idle machine.** The smoke networks are too small for torch to spread one training
  step over two cores well; two models side by side, one core each, finish sooner.
- **Robust on a busy machine.** torch's CPU kernels synchronise their threads by spin-waiting: with
  another job on the same cores a two-thread training step ran 5-10 times slower (measured on this
  project's 2-core machine: 17-21 images/s with two threads against 170-186 with one, under a
  competing load). A one-thread process that waits for a core loses only its share.
- **The same floats on any machine.** The thread count is always one (``RXLIB_TRAIN_THREADS``
  changes it), so a seed gives the same model whatever the number of cores, workers or the load.
  A worker's process trains one model after another (:mod:`rxlib.workers`); each run seeds its own
  initialisation and every epoch's streams (:mod:`rxlib.train.loop`), so a model does not depend on
  the ones its worker trained before.

Workers: ``RXLIB_WORKERS`` if set, else one per usable core (:func:`usable_cores`), never more than
there are models; on a GPU one (the models then train one after another, each in its own process, which
returns the GPU's memory when it ends: helpers are not reused there).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from rxlib.workers import HelperPool


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_count(n_jobs: int, device: str = "cpu") -> int:
    """Worker processes for ``n_jobs`` trainings: ``RXLIB_WORKERS``, else the usable cores (1 on a GPU).

    Raises:
        ValueError: ``RXLIB_WORKERS`` is not a positive integer (the message names it).
    """
    value = os.environ.get("RXLIB_WORKERS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"RXLIB_WORKERS must be a positive integer, got {value!r}")
        wanted = int(value)
    else:
        wanted = usable_cores() if str(device).startswith("cpu") else 1
    return max(1, min(wanted, n_jobs))


@dataclass(frozen=True)
class Job:
    """One model to train: its label(s) in the plan, its resolved config and data root, its registry key."""

    label: str
    config: object  # rxlib.profiles.RunConfig, resolved for data_root
    data_root: Path
    key: str

    def describe(self) -> str:
        train = self.config.train
        return f"{self.label} ({train['arch']}, {train['epochs']} epochs, key {self.key})"


def planned_jobs(s, notebooks: Sequence[str], data_root: str | os.PathLike, seed: int = 0) -> list[Job]:
    """The models ``notebooks`` ask for (:func:`rxlib.plan.notebook_model_names`) that the registry does
    not hold yet, one job per registry key, in the order the notebooks ask for them."""
    from rxlib.plan import model_config, notebook_model_names
    from rxlib.train.registry import find_model, model_key

    root = Path(data_root).resolve()
    names = notebook_model_names(s.profile)
    jobs: dict[str, Job] = {}
    for stem in notebooks:
        for name in names.get(stem, {}).values():
            config = model_config(s, name).resolved(root)
            key = model_key(config, root)
            if key in jobs:
                if name not in jobs[key].label.split(" = "):
                    jobs[key] = Job(f"{jobs[key].label} = {name}", config, root, key)
            elif find_model(config, root) is None:
                jobs[key] = Job(name, config, root, key)
    return list(jobs.values())


def _prepare_data(jobs: Sequence[Job], log: Callable[[str], None]) -> None:
    """Decode the site store once, with every core, before the workers start (they would queue on its lock)."""
    from rxlib.data.splits import root_sites

    done = set()
    for job in jobs:
        data = job.config.data
        storage, normalize = data.get("storage", "store"), data.get("normalize", "experiment")
        if storage == "png" or (job.data_root, normalize) in done:
            continue
        done.add((job.data_root, normalize))
        root_sites(job.data_root, storage="store", normalize=normalize, workers=usable_cores(), progress=True)


class TrainingFailed(ValueError):
    """A model of the run could not be trained; the message names it and gives the trainer's own error."""


def _train_job(job: Job, helpers) -> dict:
    """Train (unless another run finished it meanwhile) one model into its registry folder, under the
    registry's per-model lock, in a training helper of ``helpers`` (a :class:`rxlib.workers.HelperPool`
    of ``python -m rxlib.train --serve``); a small summary back.

    A helper interpreter rather than a ``multiprocessing`` pool: it needs nothing of the caller's
    ``__main__`` (a script that calls :func:`rxlib.reproduce.reproduce` without a main guard works) and
    it runs exactly the run a user's ``python -m rxlib.train`` runs (:mod:`rxlib.train.run`). One helper
    per worker, reused for its next model, so that the imports are paid once per worker.
    """
    from filelock import FileLock

    from rxlib.profiles import save_config
    from rxlib.train.registry import find_model, models_dir
    from rxlib.workers import HelperDied

    started = time.perf_counter()
    folder = models_dir() / job.key
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(folder.parent / f".{job.key}.lock"):  # the lock train_or_load takes
        if find_model(job.config, job.data_root) is None:
            config_file = save_config(job.config, folder.parent / f".{job.key}.config.json")
            try:
                with helpers.borrow() as helper:
                    done = helper.run({"config": str(config_file), "data": str(job.data_root), "out": str(folder)})
            except HelperDied as exc:
                raise TrainingFailed(f"training {job.describe()} failed: {exc}") from exc
            finally:
                config_file.unlink(missing_ok=True)
            if done.get("error"):
                raise TrainingFailed(f"training {job.describe()} failed: {done['error']}")
    overall = pd_read_accuracy(folder)
    return {"seconds": time.perf_counter() - started, "folder": str(folder), **overall}


def pd_read_accuracy(folder: Path) -> dict:
    """Held-out top-1 of both heads over all cell types, from a registry folder's ``accuracy.csv``."""
    import pandas as pd

    overall = pd.read_csv(folder / "accuracy.csv").set_index("cell_type").reindex(["all"])
    return {head: float(overall[head].iloc[0]) for head in ("acc_softmax", "acc_arc") if head in overall}


#: Seconds between looks at the running jobs' ``history.csv`` for new epochs.
PROGRESS_EVERY_S = 5.0


def _report_epochs(job: Job, seen: dict[str, int], log: Callable[[str], None]) -> None:
    """One line per epoch a running job has finished since the last look: its rate and time left."""
    import pandas as pd

    from rxlib.train.registry import models_dir

    history = models_dir() / job.key / "history.csv"
    try:
        rows = pd.read_csv(history)
    except (OSError, ValueError):  # not started yet, or being replaced this instant
        rows = None
    if rows is None or len(rows) <= seen.get(job.key, 0) or "seconds" not in rows:
        _report_steps(job, seen, log)
        return
    seen[job.key] = len(rows)
    epochs, per_epoch = int(job.config.train["epochs"]), float(rows["seconds"].mean())
    rate = float(rows["train_n"].sum() / rows["seconds"].sum()) if "train_n" in rows else float("nan")
    log(f"    {job.label.split(' = ')[0]}: epoch {len(rows)}/{epochs}, {rate:.0f} images/s, "
        f"about {per_epoch * (epochs - len(rows)):.0f} s left")
    seen[f"{job.key}:line"] = time.perf_counter()  # the next step line comes a while after this one


#: Seconds without a line from a running job after which its step is reported (from its progress file).
STEP_LINE_EVERY_S = 60.0


def _report_steps(job: Job, seen: dict, log: Callable[[str], None]) -> None:
    """Inside a long epoch: a line with the step, rate and the epoch's time left, at most every
    :data:`STEP_LINE_EVERY_S` seconds (from ``progress.json``, :data:`rxlib.train.loop.PROGRESS_FILE`)."""
    import json

    from rxlib.train.loop import PROGRESS_FILE
    from rxlib.train.registry import models_dir

    now = time.perf_counter()
    last = seen.setdefault(f"{job.key}:line", now)
    if now - last < STEP_LINE_EVERY_S:
        return
    try:
        step = json.loads((models_dir() / job.key / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return
    seen[f"{job.key}:line"] = now
    rate = float(step["images_per_s"])
    left = (step["steps"] - step["step"]) * int(job.config.train["batch_size"]) / max(rate, 1e-9)
    log(f"    {job.label.split(' = ')[0]}: epoch {step['epoch']}/{step['epochs']}, step {step['step']}/{step['steps']}, "
        f"{rate:.0f} images/s, about {left:.0f} s left in this epoch")


def _cost(job: Job) -> float:
    """Relative cost of a job for ordering: epochs, times the batches an unlabelled step adds."""
    train = job.config.train
    return train["epochs"] * (1.5 if train.get("pseudo_label") else 1.0)


def train_jobs(jobs: Sequence[Job], *, workers: int | None = None, log: Callable[[str], None] = print) -> dict[str, dict]:
    """Train ``jobs`` in ``workers`` processes (default :func:`worker_count`); ``{key: summary}``.

    The first failure stops the run: jobs not yet started are cancelled, running ones finish, and
    :class:`TrainingFailed` names the model and the trainer's one-line error.
    """
    if not jobs:
        return {}
    device = str(jobs[0].config.train.get("device", "cpu"))
    workers = worker_count(len(jobs), device) if workers is None else max(1, min(workers, len(jobs)))
    _prepare_data(jobs, log)
    log(f"training {len(jobs)} model(s), {workers} at a time, one thread each: "
        + ", ".join(job.label for job in jobs))
    started = time.perf_counter()
    results: dict[str, dict] = {}
    with HelperPool("rxlib.train", reuse=device.startswith("cpu")) as helpers, \
            ThreadPoolExecutor(max_workers=workers) as pool:  # each thread waits on one training helper
        longest_first = sorted(jobs, key=lambda job: -_cost(job))  # the long main model must not start last
        futures = {pool.submit(_train_job, job, helpers): job for job in longest_first}
        try:
            _follow(futures, jobs, results, started, log)
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C: nothing more starts, the running trainings end now
            for future in futures:
                future.cancel()
            helpers.kill()
            raise
    return results


def _follow(futures: dict, jobs: Sequence[Job], results: dict, started: float, log: Callable[[str], None]) -> None:
    """Report the running jobs' epochs and each finished job; on the first failure cancel the jobs not yet
    started and raise it (running ones finish)."""
    pending, seen = set(futures), {}
    while pending:
        finished, pending = wait(pending, timeout=PROGRESS_EVERY_S, return_when=FIRST_COMPLETED)
        for future in pending:
            _report_epochs(futures[future], seen, log)
        for future in finished:
            job = futures[future]
            error = future.exception()
            if error is not None:
                for other in pending:
                    other.cancel()
                raise error
            results[job.key] = summary = future.result()
            heads = ", ".join(f"{head[4:]} {summary[head]:.3f}" for head in ("acc_softmax", "acc_arc") if head in summary)
            log(f"  trained {job.label} in {summary['seconds']:.0f} s (held-out top-1: {heads}) "
                f"[{len(results)}/{len(jobs)}, {time.perf_counter() - started:.0f} s]")
