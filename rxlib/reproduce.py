"""Regenerate every figure and table: run the notebooks with papermill and record what they wrote.

One call, :func:`reproduce`, runs the notebooks found in ``notebooks/`` (``NN_name.ipynb``, in ``NN``
order), each in a kernel of its own (on the CPU a kernel reused from notebook to notebook and reset in
between, :mod:`rxlib.kernels`) with the parameters ``profile``, ``data_root``, ``seed``, ``figures_dir``
and ``reports_dir`` injected after its ``parameters`` cell. For each notebook it writes to the reports
folder:

- ``NN_name.ipynb``: the executed copy (written under a temporary name, renamed when complete);
- ``NN_name.html``: the same, rendered by nbconvert;
- ``NN_name.failed.ipynb``: only when it fails, the executed copy up to and including the error.
  The previous successful copy, if any, is left as it was.

After each notebook it checks that every file :mod:`rxlib.manifest` declares for it was written by this
run, and updates ``manifest.csv`` (item, notebook, file, bytes, sha256; rows of notebooks run again are
replaced, rows of the others kept) and ``run_log.csv`` (notebook, status, wall time, parameters).

Data: ``data_root`` if given, else the folder named by ``RXLIB_DATA``, else the synthetic data set of the
profile and seed under :func:`rxlib.config.synthetic_root`, generated on first use
(:func:`rxlib.data.roots.resolve_data_root`).

Example:
    >>> from rxlib.reproduce import reproduce
    >>> reproduce(profile="smoke", only="01_dataset_stats", dry_run=True)  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

from rxlib import config, manifest
from rxlib.io import atomic_path, write_csv
from rxlib.kernels import FRESH_VARIABLE

#: Columns of ``reports/manifest.csv``.
MANIFEST_COLUMNS: tuple[str, ...] = ("item", "notebook", "file", "bytes", "sha256")
#: Columns of ``reports/run_log.csv``.
RUN_LOG_COLUMNS: tuple[str, ...] = (
    "notebook", "status", "started", "seconds", "profile", "seed", "data_root", "error",
)
_NOTEBOOK_NAME = re.compile(r"^(\d+)_[A-Za-z0-9_\-]+\.ipynb$")
# A file counts as written by this run if it is no older than the notebook's start minus this slack
# (file systems with coarse timestamps round mtimes down).
_MTIME_SLACK_S = 2.0


class ReproduceError(RuntimeError):
    """Base class of the runner's errors; the message names the notebook."""


class NotebookExecutionError(ReproduceError):
    """A notebook raised (or its kernel died); the message names the notebook and the cell."""


class NotebookParametersError(ReproduceError, ValueError):
    """A notebook's first code cell is not tagged ``parameters``."""


class MissingOutputsError(ReproduceError):
    """A notebook ran but did not write every file the manifest declares for it."""


class UnknownNotebookError(ReproduceError, ValueError):
    """``only`` names a notebook that does not exist."""


class DirtyNotebookError(ReproduceError, ValueError):
    """A source notebook is stored with outputs or execution counts."""


def _say(line: str) -> None:
    print(line, flush=True)


@dataclass(frozen=True)
class _Plan:
    """One notebook to run and where its results go."""

    source: Path
    executed: Path
    html: Path
    failed: Path

    @property
    def name(self) -> str:
        return self.source.stem


# --------------------------------------------------------------------------------------------------
# Finding and checking notebooks


def find_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The runnable notebooks ``NN_name.ipynb`` in ``notebooks_dir``, sorted by their ``NN`` prefix.

    Args:
        notebooks_dir: Folder to look in; default :data:`rxlib.config.NOTEBOOKS_DIR`.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else config.NOTEBOOKS_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file() and _NOTEBOOK_NAME.match(p.name)]
    return sorted(found, key=lambda p: (int(_NOTEBOOK_NAME.match(p.name).group(1)), p.name))


def select_notebooks(notebooks: Sequence[Path], only: str | Iterable[str] | None) -> list[Path]:
    """The notebooks named by ``only``, in run order; all of them if ``only`` is None.

    A name may be the stem (``"01_dataset_stats"``), the file name (``"01_dataset_stats.ipynb"``) or the
    number prefix (``"01"``).

    Raises:
        UnknownNotebookError: a name matches no notebook; the message lists the valid names.
    """
    if only is None:
        return list(notebooks)
    wanted = [only] if isinstance(only, (str, os.PathLike)) else list(only)
    chosen: set[Path] = set()
    for raw in wanted:
        stems = manifest.matching_notebooks(raw, [p.stem for p in notebooks])
        matches = [p for p in notebooks if p.stem in stems]
        if len(matches) != 1:
            valid = ", ".join(p.stem for p in notebooks) or "(none: the notebooks folder is empty)"
            problem = "matches no notebook" if not matches else "is ambiguous"
            raise UnknownNotebookError(f"notebook {raw!r} {problem}; valid names: {valid}")
        chosen.add(matches[0])
    return [p for p in notebooks if p in chosen]


def _read_notebook(path: Path):
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # a broken JSON file: say which
        raise ReproduceError(f"{path}: cannot read notebook ({type(exc).__name__}: {exc})") from exc


def check_parameters_cell(path: str | Path) -> None:
    """Raise unless the first code cell of the notebook at ``path`` is tagged ``parameters``.

    Raises:
        NotebookParametersError: no code cell, or the first one lacks the tag; the message names the
            notebook and the cell.
    """
    path = Path(path)
    nb = _read_notebook(path)
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not code:
        raise NotebookParametersError(f"{path.name}: has no code cell; the first must be tagged 'parameters'")
    index, cell = code[0]
    if "parameters" not in cell.get("metadata", {}).get("tags", []):
        first = _first_line(cell.source)
        raise NotebookParametersError(
            f"{path.name}: the first code cell (cell {index}: {first!r}) is not tagged 'parameters'; "
            "papermill injects the run's parameters after that cell"
        )


def assert_clean_notebooks(notebooks_dir: str | Path | None = None) -> None:
    """Raise unless every source notebook is stored without outputs and execution counts.

    Args:
        notebooks_dir: Folder to check; default :data:`rxlib.config.NOTEBOOKS_DIR`.

    Raises:
        DirtyNotebookError: lists each notebook and the indices of its cells with outputs or counts.
            Clear them with ``jupyter nbconvert --clear-output --inplace notebooks/*.ipynb``.
    """
    problems = []
    for path in find_notebooks(notebooks_dir):
        nb = _read_notebook(path)
        dirty = [
            i for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
        ]
        if dirty:
            problems.append(f"{path.name}: cells {dirty} have outputs or execution counts")
    if problems:
        raise DirtyNotebookError(
            "source notebooks must be stored without outputs (run "
            "'jupyter nbconvert --clear-output --inplace notebooks/*.ipynb'):\n  " + "\n  ".join(problems)
        )


# --------------------------------------------------------------------------------------------------
# Running one notebook


def _first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip():
            return line.strip()
    return ""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_ARROW = re.compile(r"^-*> *(\d+)\s?(.*)$")


def _failing_line(traceback: Sequence[str] | None) -> str:
    """``", line 3: y[5]"`` from an IPython traceback (its first arrow is in the cell), or ``""``."""
    for entry in traceback or []:
        for line in _ANSI.sub("", entry).splitlines():
            match = _ARROW.match(line.strip())
            if match:
                return f", line {match.group(1)}: {match.group(2).strip()!r}"
    return ""


def _source_cell_index(source_nb, failing_source: str, fallback: int) -> int:
    """Index of the failing cell in the source notebook (papermill's index counts its injected cell)."""
    for i, cell in enumerate(source_nb.cells):
        if cell.cell_type == "code" and cell.source == failing_source:
            return i
    return fallback


#: How long ``rxlib reproduce`` takes per profile, as measured (stated by ``--help`` and the README). The
#: CPU figures are wall times on this project's 2-core machine (AMD EPYC, 24 GiB), from an empty cache:
#: synthesis, training and all eight notebooks.
EXPECTED_TIME: dict[str, str] = {
    "smoke": "about 5 min on 2 CPU cores from an empty cache, with its default 3 seeds (289 s measured idle: "
             "synthesis 29 s, 31 models 169 s, 20 notebook runs 85 s; a host with half these benchmark rates takes "
             "about twice as long); with --seeds 1 about 2 min (115 s)",
    "paper-mini": "about 2 min on 2 CPU cores (118 s measured; DenseNet-161 at 64x64, two steps per model)",
    "paper": "within the plan's GPU-hours on one GPU (rxlib reproduce --profile paper --dry-run prices it)",
}

#: Prefix of the lines a notebook helper prints when its notebook enters a new section.
_PROGRESS = "rxlib-notebook-progress: "


def cell_headings(cells) -> list[str]:
    """For each cell, the text of the last markdown heading at or before it ('' before the first):
    what the runner names as the section a notebook is in."""
    headings, current = [], ""
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            lines = [line.lstrip("#").strip() for line in str(cell.get("source", "")).splitlines()
                     if line.startswith("#")]
            current = lines[0] if lines and lines[0] else current
        headings.append(current)
    return headings


def _progress_engine() -> str:
    """Register (once) and name a papermill engine that prints one :data:`_PROGRESS` JSON line each time
    the notebook starts a cell under a new heading: cell number, cell count, heading, seconds so far."""
    from papermill.engines import NBClientEngine, papermill_engines

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            headings, started, shown = cell_headings(nb_man.nb.cells), time.perf_counter(), [""]
            cell_start = nb_man.cell_start

            def announce(cell, cell_index=None, **kw):
                heading = headings[cell_index] if cell_index is not None else ""
                if heading and heading != shown[0]:
                    shown[0] = heading
                    print(_PROGRESS + json.dumps({"cell": cell_index + 1, "cells": len(headings), "heading": heading,
                                                  "seconds": round(time.perf_counter() - started, 1)}), flush=True)
                return cell_start(cell, cell_index, **kw)

            nb_man.cell_start = announce
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register("rxlib-progress", ProgressEngine)
    return "rxlib-progress"


def _execute(plan: _Plan, parameters: dict, kernel_name: str | None, cwd: Path, *, progress: bool = False,
             kernel=None) -> None:
    """Execute ``plan.source`` into ``plan.executed`` via a temporary file; keep a failed copy. With
    ``progress``, print a :data:`_PROGRESS` line as the notebook enters each section. ``kernel``: a running
    kernel's manager to execute in (:mod:`rxlib.kernels`); None starts a fresh kernel and ends it after."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    plan.executed.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan.executed.with_name(f".{plan.name}.running.ipynb")
    try:
        pm.execute_notebook(
            str(plan.source), str(tmp), parameters=parameters, kernel_name=kernel_name,
            cwd=str(cwd), progress_bar=False, log_output=False,
            engine_name=_progress_engine() if progress else None, **({"km": kernel} if kernel is not None else {}),
        )
    except PapermillExecutionError as exc:
        kept = _keep_failed(tmp, plan.failed)
        index = _source_cell_index(_read_notebook(plan.source), exc.source, exc.cell_index)
        where = _failing_line(exc.traceback)
        raise NotebookExecutionError(
            f"notebook {plan.source.name} failed at cell {index} ({_first_line(exc.source)!r}"
            f"{where}): {exc.ename}: {exc.evalue}" + kept
        ) from exc
    except Exception as exc:  # kernel missing or dead, timeouts, ...: still name the notebook
        kept = _keep_failed(tmp, plan.failed)
        raise NotebookExecutionError(
            f"notebook {plan.source.name} could not be executed: {type(exc).__name__}: {exc}" + kept
        ) from exc
    os.replace(tmp, plan.executed)
    if plan.failed.exists():  # a stale failure from an earlier run no longer applies
        plan.failed.unlink()


def _keep_failed(tmp: Path, failed: Path) -> str:
    if tmp.exists():
        os.replace(tmp, failed)
        return f"; executed copy kept at {failed}"
    return ""


def _write_html(executed: Path, html: Path) -> None:
    # self-contained: math as MathML, widgets as their stored snapshot, no CDN scripts (rxlib.report_html)
    from rxlib.report_html import write_notebook_html

    write_notebook_html(executed, html)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _output_rows(
    notebook: str, figures_dir: Path, items: Sequence[manifest.PaperItem], since: float | None
) -> list[dict]:
    """Manifest rows of ``notebook``; raise if a declared file is missing or older than ``since``."""
    rows, missing, stale = [], [], []
    for it in manifest.items_for(notebook, items):
        for name in it.files:
            path = figures_dir / name
            if not path.is_file():
                missing.append(name)
                continue
            stat = path.stat()
            if since is not None and stat.st_mtime < since - _MTIME_SLACK_S:
                stale.append(name)
                continue
            rows.append({"item": it.item, "notebook": notebook, "file": name,
                         "bytes": stat.st_size, "sha256": _sha256(path)})
    if missing or stale:
        parts = []
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if stale:
            parts.append(f"not rewritten by this run (left from an earlier one): {', '.join(stale)}")
        raise MissingOutputsError(
            f"notebook {notebook}.ipynb did not write every file rxlib.manifest declares for it, "
            f"in {figures_dir}: " + "; ".join(parts)
        )
    return rows


def _merge_csv(path: Path, new: pd.DataFrame, replaced: Iterable[str], columns: Sequence[str],
               order: Sequence[str]) -> pd.DataFrame:
    """Rows of ``path`` for other notebooks plus ``new``, sorted by notebook order; written atomically."""
    replaced = set(replaced)
    frames = []
    if path.is_file():
        try:
            old = pd.read_csv(path, dtype={"notebook": str})
        except Exception as exc:
            raise ReproduceError(f"{path}: cannot read the existing file ({exc}); delete it to start anew") from exc
        frames.append(old[~old["notebook"].isin(replaced)])
    frames.append(new)
    merged = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) \
        else pd.DataFrame(columns=list(columns))
    merged = merged.reindex(columns=list(columns))
    rank = {name: i for i, name in enumerate(order)}
    position = merged["notebook"].map(lambda n: rank.get(n, len(rank)))
    merged = (merged.assign(_rank=position)
              .sort_values(["_rank", "notebook"], kind="stable")
              .drop(columns="_rank").reset_index(drop=True))
    write_csv(path, merged)
    return merged


# --------------------------------------------------------------------------------------------------
# The runner


def reproduce(
    profile: str = "smoke",
    data_root: str | Path | None = None,
    only: str | Iterable[str] | None = None,
    seed: int = 0,
    dry_run: bool = False,
    figures_dir: str | Path | None = None,
    reports_dir: str | Path | None = None,
    kernel_name: str | None = None,
    log: Callable[[str], None] | None = None,
    *,
    notebooks_dir: str | Path | None = None,
    items: Sequence[manifest.PaperItem] | None = None,
    overrides=None,
    rates=None,
    seeds: int | None = None,
) -> pd.DataFrame:
    """Run the notebooks and return the manifest of the files they wrote.

    Args:
        profile: Named configuration passed to every notebook (``"smoke"``, ``"paper"``, ``"rxrx1"``).
        data_root: Data set folder; None means ``RXLIB_DATA`` or else the synthetic data set of the
            profile and seed (generated on first use; never for ``"rxrx1"``).
        only: A notebook name (``"01_dataset_stats"``, ``"01_dataset_stats.ipynb"`` or ``"01"``) or a list
            of them; None runs all notebooks found.
        seed: Random seed passed to every notebook (and to the data generator).
        dry_run: Only print what would run (notebooks, parameters, expected outputs) and the plan of
            :mod:`rxlib.plan` (models, passes, GPU-hours, RAM, weights); write nothing, generate nothing,
            start no kernel.
        figures_dir: Where notebooks write figures and tables; default :func:`rxlib.config.figures_dir`.
        reports_dir: Where executed notebooks, HTML, ``manifest.csv`` and ``run_log.csv`` go; default
            :func:`rxlib.config.reports_dir`.
        kernel_name: Jupyter kernel; None uses the one in each notebook's metadata (papermill's choice).
        log: Receives one line per step (default: printed and flushed at once, also into a file or pipe).
        notebooks_dir: Folder of the source notebooks; default :data:`rxlib.config.NOTEBOOKS_DIR`.
            Also the working directory of each kernel.
        items: The paper items to check outputs against; default :data:`rxlib.manifest.PAPER_ITEMS`.
        overrides: Settings over the profile's, ``{"train.epochs": 10, "budget.comparison_epochs": 2}`` or
            ``["train.epochs=10", ...]`` (see :func:`rxlib.profiles.settings`); checked before anything
            runs and passed to every notebook as its ``overrides`` parameter (a JSON string).
        rates: :class:`rxlib.plan.Rates` for the dry-run plan (default: measured, else assumed).
        seeds: seeds the verdicts pool (:mod:`rxlib.explain.seeds`): ``seed`` and the ``seeds - 1`` after
            it; None: the profile's default (:func:`rxlib.explain.seeds.default_seeds`: 3 for smoke, else
            1). Each extra seed runs (:func:`_seed_tasks`) the notebooks of
            :data:`rxlib.plan.VERDICT_NOTEBOOKS` among those selected, on the synthetic set of that seed
            (the same data when ``data_root`` is given) with its own ``train.seed`` (the main one's plus
            1, 2, ...), into ``<reports>/seeds/seed<N>/``, each before the same notebook of ``seed``, which
            pools every verdict (:func:`_in_order`).

    Returns:
        The manifest (columns of :data:`MANIFEST_COLUMNS`) as written to ``reports/manifest.csv``: this
        run's rows merged with those of notebooks run earlier. In a dry run, the expected rows with
        empty ``bytes`` and ``sha256``.

    Raises:
        UnknownNotebookError: ``only`` names a notebook that does not exist.
        NotebookParametersError: a selected notebook's first code cell is not tagged ``parameters``
            (checked for all selected notebooks before any runs).
        NotebookExecutionError: a notebook failed; names the notebook, the cell and the exception.
        MissingOutputsError: a notebook did not write all the files the manifest declares for it.
        FileNotFoundError, ValueError: see :func:`rxlib.data.roots.resolve_data_root`; also an unknown
            setting or bad value in ``overrides`` and, before a real run, a CUDA device on a machine
            without one or missing ImageNet weights (one line naming the setting and the fix).
    """
    from rxlib.data.roots import resolve_data_root
    from rxlib.profiles import PROFILES, parse_overrides, settings

    from rxlib.explain.seeds import default_seeds, seed_list

    log = log or _say
    total_start = time.perf_counter()
    seeds = default_seeds(profile) if seeds is None else seeds
    extra_seeds = seed_list(seed, seeds)[1:]  # seeds below 1: one line before anything runs
    overrides = parse_overrides(overrides)
    # unknown keys and bad values: one line, before anything runs (a profile that names only a synthetic
    # data set, e.g. "cpu", has no training settings to check unless some are overridden)
    run_settings = settings(profile, overrides) if profile in PROFILES or overrides else None
    items = manifest.PAPER_ITEMS if items is None else tuple(items)
    nb_dir = Path(notebooks_dir if notebooks_dir is not None else config.NOTEBOOKS_DIR).expanduser().resolve()
    figs = Path(figures_dir if figures_dir is not None else config.figures_dir()).expanduser().resolve()
    reps = Path(reports_dir if reports_dir is not None else config.reports_dir()).expanduser().resolve()

    available, selected = _selected_notebooks(nb_dir, only)
    root = resolve_data_root(profile, seed, data_root, dry_run=dry_run, log=log)
    parameters = {"profile": profile, "data_root": str(root), "seed": int(seed),
                  "figures_dir": str(figs), "reports_dir": str(reps)}
    if overrides:
        parameters["overrides"] = json.dumps(overrides, sort_keys=True)
    if extra_seeds:
        parameters["seeds"] = int(seeds)
    planned = _planned_notebooks(profile, selected) if run_settings is not None else []
    plans = [
        _Plan(source=p, executed=reps / p.name, html=reps / f"{p.stem}.html",
              failed=reps / f"{p.stem}.failed.ipynb")
        for p in selected
    ]
    order = [p.stem for p in available]

    if dry_run:
        result = _dry_run(plans, parameters, figs, reps, items, kernel_name, log)
        if planned:
            _log_plan(profile, root, overrides, seed, planned, rates, log)
        if extra_seeds:
            _log_extra_seeds(extra_seeds, selected, log)
        return result
    if run_settings is not None:
        preflight(run_settings, planned)

    figs.mkdir(parents=True, exist_ok=True)  # notebooks may write into it without creating it
    reps.mkdir(parents=True, exist_ok=True)
    device = str(run_settings.train.get("device", "cpu")) if run_settings is not None else "cpu"
    seed_runs = _extra_seed_runs(profile, data_root, seed, extra_seeds, run_settings, overrides, selected, reps, log)
    if planned:
        _train_models(run_settings, planned, root, seed, seed_runs, log)
    run = _Run(profile, seed, root, figs, reps, items, order, log, len(plans))
    tasks = _all_tasks(plans, parameters, run, seed_runs, log)
    log(f"running {len(plans)} notebook(s) from {nb_dir} (profile={profile!r}, seed={seed}, data={root})")
    with _kernel_threads():
        _run_notebooks(_in_order(tasks, run), kernel_name, nb_dir, device)
    log(f"done: {len(plans)} notebook(s); the whole run (data, training, notebooks) took "
        f"{time.perf_counter() - total_start:.1f} s; manifest in {reps / 'manifest.csv'}")
    return run.result


def _selected_notebooks(nb_dir: Path, only) -> tuple[list[Path], list[Path]]:
    """All notebooks of ``nb_dir`` and those ``only`` selects, each checked for its parameters cell."""
    available = find_notebooks(nb_dir)
    if not available:
        raise ReproduceError(f"no notebooks named NN_name.ipynb in {nb_dir}")
    selected = select_notebooks(available, only)
    for path in selected:
        check_parameters_cell(path)
    return available, selected


@dataclass(frozen=True)
class _SeedRun:
    """The verdict notebooks of one extra seed: its data, settings and reports folder."""

    seed: int
    root: Path
    overrides: dict
    reports: Path
    plans: list[_Plan]

    @property
    def notebooks(self) -> list[str]:
        return [plan.name for plan in self.plans]


def _extra_seed_runs(profile: str, data_root, seed: int, extra_seeds: Sequence[int], run_settings, overrides: dict,
                     selected: Sequence[Path], reps: Path, log) -> list[_SeedRun]:
    """For each extra seed: its data root (the synthetic set of that seed, generated if needed; ``data_root``
    itself when given), the settings with ``train.seed`` set to its training seed (the main seed's plus
    1, 2, ...: never the main one's, also on the same data), and the selected notebooks of
    :data:`rxlib.plan.VERDICT_NOTEBOOKS` with their outputs in :func:`rxlib.explain.seeds.seed_reports_dir`."""
    from rxlib.data.roots import resolve_data_root
    from rxlib.explain.seeds import seed_reports_dir
    from rxlib.plan import VERDICT_NOTEBOOKS

    chosen = [p for p in selected if p.stem in VERDICT_NOTEBOOKS]
    base = int(run_settings.train.get("seed", 0)) if run_settings is not None else 0  # the main seed's training seed
    runs = []
    for extra in extra_seeds if chosen else ():
        reports = seed_reports_dir(reps, extra)
        runs.append(_SeedRun(
            seed=extra, root=Path(resolve_data_root(profile, extra, data_root, log=log)),
            overrides={**overrides, "train.seed": base + extra - seed}, reports=reports,
            plans=[_Plan(source=p, executed=reports / p.name, html=reports / f"{p.stem}.html",
                         failed=reports / f"{p.stem}.failed.ipynb") for p in chosen]))
    return runs


def _log_extra_seeds(extra_seeds: Sequence[int], selected: Sequence[Path], log) -> None:
    """The dry run's line on the extra seeds: which notebooks run again for them."""
    from rxlib.plan import VERDICT_NOTEBOOKS

    again = [p.stem for p in selected if p.stem in VERDICT_NOTEBOOKS]
    log(f"extra seed{'s' if len(extra_seeds) > 1 else ''} {', '.join(map(str, extra_seeds))} first: "
        f"{', '.join(again) or 'no notebook'} again, each seed on its own data set and training seed, with those "
        f"notebooks' models trained once more per seed (the plan above is one seed's)")


def _train_models(run_settings, planned: Sequence[str], root: Path, seed: int, seed_runs: Sequence[_SeedRun],
                  log) -> None:
    """Train the models of the main seed's notebooks and of every extra seed's, in one pool."""
    from rxlib.profiles import settings
    from rxlib.train.pool import planned_jobs, train_jobs

    jobs = planned_jobs(run_settings, planned, root, seed)
    for extra in seed_runs:
        jobs += [dataclasses.replace(job, label=f"{job.label} (seed {extra.seed})") for job in
                 planned_jobs(settings(run_settings.profile, extra.overrides), extra.notebooks, extra.root, extra.seed)]
    train_jobs(jobs, log=log)


def _all_tasks(plans: Sequence[_Plan], parameters: dict, run: _Run, seed_runs: Sequence[_SeedRun], log) -> list[_Task]:
    """The main seed's notebooks (recorded by ``run``) and every extra seed's (:func:`_seed_tasks`)."""
    tasks = [_Task(plan, parameters, run, number) for number, plan in enumerate(plans, 1)]
    for extra in seed_runs:
        log(f"extra seed {extra.seed}: {len(extra.plans)} notebook(s) on {extra.root} into {extra.reports}, each "
            f"before the same notebook of the main seed (its lines start with 'seed {extra.seed}:')")
        tasks += _seed_tasks(extra, parameters, run.items, run.order, log)
    return tasks


def _seed_tasks(extra: _SeedRun, parameters: dict, items, order, log) -> list[_Task]:
    """One extra seed's notebooks, into its own reports folder (its own manifest and run log there); each of
    the main seed's notebooks of the same name waits for it (:func:`_in_order`)."""
    figures = extra.reports / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    parameters = {**parameters, "data_root": str(extra.root), "seed": extra.seed, "seeds": 1,
                  "figures_dir": str(figures), "reports_dir": str(extra.reports),
                  "overrides": json.dumps(extra.overrides, sort_keys=True)}
    run = _Run(parameters["profile"], extra.seed, extra.root, figures, extra.reports, items, order,
               lambda line: log(f"seed {extra.seed}: {line}"), len(extra.plans))
    return [_Task(plan, parameters, run, number) for number, plan in enumerate(extra.plans, 1)]


def _log_plan(profile: str, root: Path, overrides, seed: int, planned: Sequence[str], rates, log) -> None:
    """The plan of :mod:`rxlib.plan` for a dry run (priced from ``root``'s metadata when it has some)."""
    from rxlib.plan import build_plan, format_plan

    has_data = (root / "metadata.csv").is_file() or any((root / n).is_file() for n in ("train.csv", "test.csv"))
    plan = build_plan(profile, root if has_data else None, overrides=overrides, seed=seed, notebooks=planned,
                      rates=rates)
    log("")
    log(format_plan(plan))


@dataclass
class _Run:
    """What one run records as its notebooks finish: run-log rows, manifest rows, the merged manifest."""

    profile: str
    seed: int
    root: Path
    figs: Path
    reps: Path
    items: Sequence[manifest.PaperItem]
    order: list[str]
    log: Callable[[str], None]
    total: int
    run_rows: list = field(default_factory=list)
    manifest_rows: list = field(default_factory=list)
    done: list = field(default_factory=list)
    result: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(MANIFEST_COLUMNS)))

    def record(self, plan: _Plan, number: int, started_wall: float, seconds: float, error: BaseException | None) -> None:
        """Check and record one finished notebook (outputs, manifest, run log); raise what it raised."""
        row = {"notebook": plan.name, "status": "ok",
               "started": _dt.datetime.fromtimestamp(started_wall).isoformat(timespec="seconds"),
               "profile": self.profile, "seed": int(self.seed), "data_root": str(self.root), "error": "",
               "seconds": round(seconds, 2)}
        rows = []
        if error is None:
            try:
                rows = _output_rows(plan.name, self.figs, self.items, since=started_wall)
            except Exception as exc:
                error = exc
        if error is not None:
            row.update(status="failed", error=f"{type(error).__name__}: {error}".splitlines()[0])
            self.run_rows.append(row)
            _merge_csv(self.reps / "run_log.csv", pd.DataFrame(self.run_rows), self.done + [plan.name],
                       RUN_LOG_COLUMNS, self.order)
            self.log(f"[{number}/{self.total}] {plan.name} FAILED after {seconds:.1f} s")
            raise error
        self.run_rows.append(row)
        self.manifest_rows.extend(rows)
        self.done.append(plan.name)
        self.result = _merge_csv(self.reps / "manifest.csv", pd.DataFrame(self.manifest_rows, columns=list(MANIFEST_COLUMNS)),
                                 self.done, MANIFEST_COLUMNS, self.order)
        _merge_csv(self.reps / "run_log.csv", pd.DataFrame(self.run_rows), self.done, RUN_LOG_COLUMNS, self.order)
        n_items = len(manifest.items_for(plan.name, self.items))
        note = "" if n_items else " (no paper items declared in rxlib.manifest)"
        self.log(f"[{number}/{self.total}] {plan.name} ok in {seconds:.1f} s: {len(rows)} file(s) for "
                 f"{n_items} item(s){note} -> {plan.executed}")


def _execute_and_render(plan: _Plan, parameters: dict, kernel_name: str | None, cwd: Path, *,
                        progress: bool = False, keep_kernel: bool = False) -> None:
    """Execute one notebook and write its HTML (what a notebook helper does for each job). With
    ``keep_kernel``, in the kernel this process keeps (:mod:`rxlib.kernels`), reset for the next notebook
    afterwards, or ended if the notebook failed."""
    if not keep_kernel:
        _execute(plan, parameters, kernel_name, cwd, progress=progress)
    else:
        from papermill.utils import nb_kernel_name  # papermill's choice when kernel_name is None

        from rxlib import kernels

        kernel = kernels.kept(nb_kernel_name(_read_notebook(plan.source), kernel_name), cwd)
        try:
            _execute(plan, parameters, kernel_name, cwd, progress=progress, kernel=kernel)
        except BaseException:
            kernels.discard()
            raise
        kernels.reset()
    _write_html(plan.executed, plan.html)


def _execute_in_helper(plan: _Plan, parameters: dict, kernel_name: str | None, cwd: Path, helpers,
                      log: Callable[[str], None] | None = None, keep_kernel: bool = False) -> None:
    """:func:`_execute_and_render` in a notebook helper of ``helpers`` (``python -m rxlib.reproduce --serve``,
    :mod:`rxlib.workers`), so that notebooks run side by side (the caller's threads only wait), nothing of
    the caller's ``__main__`` is needed and papermill and nbconvert are imported once per helper, not once
    per notebook; with ``keep_kernel`` the helper's kernel is also reused (:mod:`rxlib.kernels`). Each section the
    notebook enters is passed to ``log`` as it happens (``  07_gradcam: <heading> (cell 5/19, 12 s)``); the
    kernel's own console noise stays in the helper; a failure comes back as the :class:`NotebookExecutionError` it
    raised."""
    from rxlib.workers import HelperDied

    def on_line(line: str) -> None:
        if line.startswith(_PROGRESS) and log is not None:
            step = json.loads(line[len(_PROGRESS):])
            log(f"    {plan.name}: {step['heading']} (cell {step['cell']}/{step['cells']}, {step['seconds']:.0f} s)")

    job = {"plan": {k: str(v) for k, v in dataclasses.asdict(plan).items()}, "parameters": parameters,
           "kernel_name": kernel_name, "cwd": str(cwd), "keep_kernel": keep_kernel}
    try:
        with helpers.borrow() as helper:
            result = helper.run(job, on_line)
    except HelperDied as exc:
        raise NotebookExecutionError(f"notebook {plan.source.name} could not be executed ({plan.executed}): "
                                     f"{exc}") from exc
    error = result.get("error")
    if error:  # _execute's own errors name the notebook; any other is named here (with its seed's folder)
        raise NotebookExecutionError(error if error.startswith(f"notebook {plan.source.name} ") else
                                     f"notebook {plan.source.name} could not be executed ({plan.executed}): {error}")


def _serve_notebook(job: dict) -> dict:
    """One job of ``python -m rxlib.reproduce --serve``: run one notebook and write its HTML."""
    plan = _Plan(**{k: Path(v) for k, v in job["plan"].items()})
    _execute_and_render(plan, job["parameters"], job["kernel_name"], Path(job["cwd"]), progress=True,
                        keep_kernel=job.get("keep_kernel", False))
    return {}


@dataclass(frozen=True)
class _Task:
    """One notebook to execute: its plan and parameters, the run that records it and its number there, and
    the executed notebooks that must be complete before it starts."""

    plan: _Plan
    parameters: dict
    run: _Run
    number: int
    after: tuple[Path, ...] = ()


def _in_order(tasks: Sequence[_Task], main: _Run) -> list[_Task]:
    """The tasks in the order they start, each with what it waits for: a main-seed notebook waits for the extra
    seeds' notebooks of the same name (it pools their verdicts, :mod:`rxlib.explain.seeds`).

    Order, so that two cores stay busy to the end: first the main seed's notebooks that wait for nothing (those no
    extra seed runs again: 01 and 02), then by notebook from the last to the first (the explanation notebooks 07
    and 08 take the longest), each extra seed's before the main seed's. Notebook order put the longest last: in a
    smoke run with three seeds one core then idled for the last 12 s of 95 s of notebooks (measured); this order
    packs them into 85 s (measured). Each worker takes the first task in this order whose notebooks to wait for are
    complete."""
    seeds_of: dict[str, list[Path]] = {}
    for task in tasks:
        if task.run is not main:
            seeds_of.setdefault(task.plan.name, []).append(task.plan.executed)
    ordered = [dataclasses.replace(task, after=tuple(seeds_of.get(task.plan.name, ()))) if task.run is main else task
               for task in tasks]
    position = {name: i for i, name in enumerate(main.order)}

    def rank(task: _Task) -> tuple:
        if task.run is main and not task.after:
            return (0, position.get(task.plan.name, 0))
        return (1, -position.get(task.plan.name, 0), task.run is main)

    return sorted(ordered, key=rank)  # stable: seeds in their order within a notebook


def _run_notebooks(tasks: Sequence[_Task], kernel_name: str | None, nb_dir: Path, device: str) -> None:
    """Execute ``tasks`` several at a time (:func:`rxlib.train.pool.worker_count`: one per usable core on
    the CPU, one on a GPU), each in a helper process (:func:`_execute_in_helper`) whose kernel runs one
    notebook after another on the CPU (reset in between, :mod:`rxlib.kernels`; ``RXLIB_FRESH_KERNELS=1``
    or a GPU: a fresh kernel per notebook), each
    as soon as a worker is free and what it waits for is complete, in the order given; record each as it
    finishes, in the parent alone (so each manifest.csv and run_log.csv has one writer). Their models are
    trained before (:mod:`rxlib.train.pool`), so no two notebooks train the same model. After a failure no
    further notebook starts; those running finish and are recorded, then the first failure is raised."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from rxlib.train.pool import worker_count
    from rxlib.workers import HelperPool

    workers = worker_count(len(tasks), device)
    # on the CPU each helper keeps its kernel from one notebook to the next (rxlib.kernels); on a GPU a fresh
    # kernel per notebook returns the GPU's memory when the notebook ends
    keep_kernel = str(device).startswith("cpu") and os.environ.get(FRESH_VARIABLE, "") not in ("1", "true", "yes")
    position = {id(task): i for i, task in enumerate(tasks)}
    complete: set[Path] = set()
    failure: BaseException | None = None
    with HelperPool("rxlib.reproduce") as helpers, ThreadPoolExecutor(max_workers=workers) as pool:
        # each thread waits on one notebook's helper
        queue, running = list(tasks), {}
        while queue or running:
            while failure is None and len(running) < workers:
                task = next((t for t in queue if complete.issuperset(t.after)), None)
                if task is None:
                    break
                queue.remove(task)
                task.run.log(f"[{task.number}/{task.run.total}] {task.plan.name} ...")
                future = pool.submit(_execute_in_helper, task.plan, task.parameters, kernel_name, nb_dir, helpers,
                                     task.run.log, keep_kernel)
                running[future] = (task, time.time(), time.perf_counter())
            if not running:
                if queue and failure is None:  # cannot happen with _in_order's tasks; never end silently
                    raise ReproduceError(f"notebooks waiting for notebooks that never ran: "
                                         f"{', '.join(str(t.plan.executed) for t in queue)}")
                break
            try:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
            except (KeyboardInterrupt, SystemExit):  # Ctrl-C: the running notebooks end now
                helpers.kill()
                raise
            for future in sorted(finished, key=lambda f: position[id(running[f][0])]):
                task, started_wall, started = running.pop(future)
                try:
                    task.run.record(task.plan, task.number, started_wall, time.perf_counter() - started,
                                    future.exception())
                    complete.add(task.plan.executed)
                except Exception as exc:
                    failure = failure or exc
    if failure is not None:
        raise failure


@contextmanager
def _kernel_threads():
    """Kernels started inside inherit one thread per math library (``OMP_NUM_THREADS`` etc. set to
    `rxlib.profiles.cpu_threads` where the user has not set them): notebooks run side by
    side, and torch threads that spin-wait on a shared core slow each other down many times over."""
    from rxlib.profiles import cpu_threads

    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    before = {name: os.environ.get(name) for name in names}
    for name in names:
        os.environ.setdefault(name, str(cpu_threads()))
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _planned_notebooks(profile: str, selected: Sequence[Path]) -> list[str]:
    """The selected notebooks that :mod:`rxlib.plan` knows (the project's own; not a test's stand-ins)."""
    from rxlib.plan import notebook_model_names

    known = notebook_model_names(profile)
    return [p.stem for p in selected if p.stem in known]


def preflight(run_settings, notebooks: Sequence[str]) -> None:
    """Check what would stop a run late, before any notebook starts: the device and the ImageNet weights.

    Raises:
        ValueError: one line naming the setting and the fix (``--set train.device=cpu``,
            ``--set train.pretrained=false`` or where to place the weights).
    """
    from rxlib.plan import missing_weights, requested_configs
    from rxlib.profiles import check_device

    check_device(run_settings.train.get("device", "cpu"))
    if notebooks:
        missing = missing_weights(requested_configs(run_settings.profile, run_settings.overrides, notebooks))
        if missing:
            raise ValueError("ImageNet weights missing: " + "; ".join(missing))


def _dry_run(plans: Sequence[_Plan], parameters: dict, figs: Path, reps: Path,
             items: Sequence[manifest.PaperItem], kernel_name: str | None,
             log: Callable[[str], None]) -> pd.DataFrame:
    log(f"dry run: would run {len(plans)} notebook(s), kernel {kernel_name or '(from notebook metadata)'}")
    log("parameters: " + ", ".join(f"{k}={v!r}" for k, v in parameters.items()))
    rows = []
    for number, plan in enumerate(plans, 1):
        log(f"[{number}/{len(plans)}] {plan.source} -> {plan.executed.name}, {plan.html.name}")
        its = manifest.items_for(plan.name, items)
        if not its:
            log("    (no paper items declared in rxlib.manifest)")
        for it in its:
            log(f"    {it.item}: {', '.join(it.files)}")
            rows.extend({"item": it.item, "notebook": plan.name, "file": name, "bytes": pd.NA,
                         "sha256": pd.NA} for name in it.files)
    log(f"outputs under {figs}; reports, manifest.csv and run_log.csv under {reps}")
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))


# --------------------------------------------------------------------------------------------------
# Command line


if __name__ == "__main__":  # the notebook helper of _execute_in_helper
    if sys.argv[1:] == ["--serve"]:
        from rxlib.workers import serve

        sys.exit(serve(_serve_notebook, known_errors=(NotebookExecutionError,)))
    sys.exit("usage: python -m rxlib.reproduce --serve (internal; run notebooks with `rxlib reproduce`)")
