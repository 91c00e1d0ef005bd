"""Writing a synthetic set to disk: deterministic, atomic, resumable, optionally in several processes.

Order of writes: ``truth/params.json`` first (it fixes the parameters of the folder), then
``truth/classes.csv``, then every site (six channel PNGs, then its two masks), then ``truth/sites.csv``,
and ``metadata.csv`` last: its presence marks a finished set.
"""
from __future__ import annotations

import json
import multiprocessing
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rxlib.config import CELL_TYPES, N_CHANNELS
from rxlib.io import (
    RxRx1DataError,
    disk_full_error,
    is_disk_full,
    read_mask_png,
    read_png,
    write_csv,
    write_json,
    write_png,
)
from rxlib.outputs import ForeignFilesError, OutputFolder, claim_output_folder, record_written
from rxlib.synth.config import (
    CELL_TYPE_SHAPES,
    REAL_FOREGROUND,
    REAL_FOREGROUND_BATCH_SPREAD,
    REAL_MEAN,
    REAL_NUCLEI_PER_FIELD,
    REAL_P1,
    REAL_STD,
    SynthConfig,
    resolve_config,
)
from rxlib.synth.design import (
    STREAM_CALIBRATION,
    STREAM_SITE,
    ClassSpec,
    Design,
    SiteTask,
    build_design,
    stream_rng,
)
from rxlib.synth.render import (
    CleanSite,
    acquire,
    cell_fill,
    cue_pattern,
    expose,
    illumination_field,
    optics,
    record,
    render_cells,
    spread_stain,
)

FORMAT = "rxlib-synth/1"
METADATA_COLUMNS = ["site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well", "site",
                    "well_type", "sirna", "sirna_id"]
#: Paths this generator writes inside an output folder; ``overwrite=True`` removes only the files it
#: recorded in ``.rxlib-written.txt`` (see :mod:`rxlib.outputs`).
OWNED = ("metadata.csv", "images", "truth")
# Names a synthetic set made before the record existed may hold (such a folder is adopted).
_LEGACY_NAMES = re.compile(
    r"^(metadata\.csv|truth/(params\.json|classes\.csv|sites\.csv)"
    r"|images/[A-Z0-9]+-\d{2}/Plate\d+/[A-P]\d{2}_s\d+_w\d\.png"
    r"|truth/masks/[A-Z0-9]+-\d{2}/Plate\d+/[A-P]\d{2}_s\d+_(cells|phenotype)\.png)$")


class SynthParameterMismatch(ValueError):
    """An output folder holds a (partial) synthetic set made with other parameters."""


class SynthFolderNotOurs(SynthParameterMismatch, ForeignFilesError):
    """An output folder holds files or folders that rxlib did not write; nothing there is touched."""


def image_path(out: Path, task: SiteTask, channel: int) -> Path:
    """``images/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png`` (RxRx1 layout)."""
    return out / "images" / task.experiment / f"Plate{task.plate}" / f"{task.well}_s{task.site}_w{channel}.png"


def mask_path(out: Path, task: SiteTask, kind: str) -> Path:
    """``truth/masks/{experiment}/Plate{plate}/{well}_s{site}_{kind}.png``, kind ``cells`` or ``phenotype``."""
    return out / "truth" / "masks" / task.experiment / f"Plate{task.plate}" / f"{task.well}_s{task.site}_{kind}.png"


def site_files(out: Path, task: SiteTask) -> list[Path]:
    return [image_path(out, task, c) for c in range(1, N_CHANNELS + 1)] + [
        mask_path(out, task, "cells"), mask_path(out, task, "phenotype")]


# ---------------------------------------------------------------------------------------------
# Calibration


#: Reaches tried by the foreground calibration (:func:`rxlib.synth.render.spread_stain`).
REACHES = tuple(float(r) + 0.0 for r in np.round(np.arange(-1.2, 0.81, 0.2), 2))  # + 0.0: no -0.0 in params.json
#: Sites per cell type the foreground fit images (spread over the design): as many as the realism table
#: reads by default (its ``max_sites``), since the foreground varies from site to site (0.17-0.50 on RPE w2).
SURVEY_SITES = 16
#: A foreground fraction this close to the real one is good enough, as a share of the channel's real
#: batch-to-batch difference (REAL_FOREGROUND_BATCH_SPREAD, the realism table's threshold): a margin
#: inside the threshold. The smallest reach that gets there is taken, so a stain already that close is
#: left as drawn and any other changes least (the realism table scores its texture too).
FOREGROUND_TOLERANCE = 0.75


def calibrate(cfg: SynthConfig, seed: int, classes: list[ClassSpec], design: Design | None = None) -> dict[str, dict[str, Any]]:
    """Per cell type and channel: background, contrast exponent and scale matching real RxRx1 (and, with
    ``cfg.fit_foreground``, the stain's spread).

    ``value = background + scale * signal ** gamma`` (before gain, illumination and noise), with
    ``background`` = the real 1st percentile, ``gamma`` chosen on a grid so that the coefficient of
    variation of the pixel values equals the real one (REAL_STD / REAL_MEAN), and ``scale`` so that
    the mean equals the real mean (REAL_MEAN), over ``calibration_sites`` clean negative-control
    renders at unit gain. With ``fit_foreground`` (which needs ``design``) the signal of w2-w6 first goes
    through :func:`~rxlib.synth.render.spread_stain` with the reach of :data:`REACHES` chosen by
    :func:`_fit_reach` on :data:`SURVEY_SITES` sites of the design itself, imaged as they will be, and
    ``reach`` and ``level`` join the channel's entry.
    """
    negative = classes[cfg.negative_control_id]
    low, high = cfg.contrast_gamma
    gammas = np.round(np.linspace(low, high, max(2, round((high - low) / 0.05) + 1)), 3)
    out: dict[str, dict[str, Any]] = {}
    for ct_index, (cell_type, _, _) in enumerate(cfg.experiments):
        sites = [_render_clean(stream_rng(seed, STREAM_CALIBRATION, ct_index, i), cfg, cell_type, negative)
                 for i in range(cfg.calibration_sites)]
        background = np.array(REAL_P1[cell_type])
        target = np.array(REAL_MEAN[cell_type])
        target_cv = np.array(REAL_STD[cell_type]) / target
        entry = {"background": background, "gamma": np.ones(N_CHANNELS), "scale": np.ones(N_CHANNELS)}
        if cfg.fit_foreground:
            entry.update(reach=np.zeros(N_CHANNELS), level=np.zeros(N_CHANNELS))
            survey = _survey_sites(cfg, seed, classes, design, cell_type, ct_index)
        for c in range(N_CHANNELS):
            channel = [np.maximum(site.signal[c], 0.0).astype(np.float64) for site in sites]
            if cfg.fit_foreground and c > 0:  # w1: the nuclei, calibrated by their size and number instead
                fit = _fit_reach(c, channel, sites, survey, cfg, gammas, background[c], target[c], target_cv[c],
                                 REAL_FOREGROUND[cell_type][c], FOREGROUND_TOLERANCE * REAL_FOREGROUND_BATCH_SPREAD[c])
                entry["reach"][c], entry["level"][c] = fit[2], fit[3]
            else:
                fit = _fit_contrast(channel, gammas, background[c], target[c], target_cv[c])
            entry["gamma"][c], entry["scale"][c] = fit[0], fit[1]
        out[cell_type] = {name: [round(float(v), 5) for v in values] for name, values in entry.items()}
        out[cell_type].update(target_mean=list(target), target_std=list(REAL_STD[cell_type]),
                              target_nuclei_per_512_field=REAL_NUCLEI_PER_FIELD[cell_type]
                              * cfg.density_scale[CELL_TYPES.index(cell_type)])
        if cfg.fit_foreground:
            out[cell_type]["target_foreground"] = list(REAL_FOREGROUND[cell_type])
    return out


def _fit_contrast(channel: list[np.ndarray], gammas: np.ndarray, background: float, target: float,
                  target_cv: float) -> tuple[float, float]:
    """The (gamma, scale) of the grid whose image has the real coefficient of variation and mean."""
    signal = np.concatenate([site.ravel() for site in channel])
    best, gamma, scale = np.inf, 1.0, 1.0
    for g in gammas:
        powered = signal ** g
        sc = max(target - background, 0.5) / max(powered.mean(), 1e-9)
        cv = sc * powered.std() / (background + sc * powered.mean())
        if abs(cv - target_cv) < best:
            best, gamma, scale = abs(cv - target_cv), float(g), float(sc)
    return gamma, scale


@dataclass
class _Survey:
    """A site of the design as the foreground fit sees it: its clean signal, cell fill, camera settings and
    camera noise (two standard-normal draws per pixel and channel)."""

    clean: CleanSite
    fill: np.ndarray
    gain: np.ndarray
    fields: np.ndarray
    offset: np.ndarray
    noise: np.ndarray


def _survey_sites(cfg: SynthConfig, seed: int, classes: list[ClassSpec], design: Design | None, cell_type: str,
                  ct_index: int) -> list[_Survey]:
    """:data:`SURVEY_SITES` sites of ``cell_type`` spread over the design (its classes, experiments and
    densities), rendered exactly as :func:`render_site` renders them."""
    if design is None:
        raise ValueError("fit_foreground calibrates on the design's own sites: pass design to calibrate()")
    state = {"cfg": cfg, "seed": seed, "classes": classes, "experiments": design.experiments,
             "plates": design.plates, "wells": design.wells}
    tasks = [task for task in design.tasks if task.cell_type == cell_type]
    chosen = np.unique(np.linspace(0, len(tasks) - 1, min(SURVEY_SITES, len(tasks))).round().astype(int))
    out = []
    for i in chosen:
        clean, _ = _clean_site(state, tasks[i])
        noise = stream_rng(seed, STREAM_CALIBRATION, ct_index, 1000 + int(i)).standard_normal(
            (2, N_CHANNELS, cfg.image_size, cfg.image_size)).astype(np.float32)
        out.append(_Survey(clean, cell_fill(clean.labels, cfg.psf_sigma), *_camera_settings(state, tasks[i]), noise))
    return out


def _fit_reach(c: int, channel: list[np.ndarray], sites: list[CleanSite], survey: list[_Survey], cfg: SynthConfig,
               gammas: np.ndarray, background: float, target: float, target_cv: float, foreground: float,
               tolerance: float) -> tuple[float, float, float, float]:
    """(gamma, scale, reach, level) of channel ``c``: the smallest reach of :data:`REACHES` whose images of
    the ``survey`` sites have an Otsu foreground fraction (median over them) within ``tolerance`` of
    ``foreground``; if none, the one nearest it (the smaller reach on a tie). Gamma and scale are fitted
    for each reach on the negative-control renders (``channel``, ``sites``), as :func:`calibrate` does."""
    from rxlib.segmentation import otsu_foreground

    fills = [cell_fill(site.labels, cfg.psf_sigma) for site in sites]
    inside = np.concatenate([x[site.labels > 0] for x, site in zip(channel, sites)])
    level = float(inside.mean()) if inside.size else 0.0
    best = (np.inf, 0.0, 0.0, 0.0, 0.0)
    for reach in REACHES:
        spread = [spread_stain(x, fill, reach, level) for x, fill in zip(channel, fills)]
        gamma, scale = _fit_contrast([x[::4, ::4] for x in spread], gammas, background, target, target_cv)
        fraction = float(np.median([otsu_foreground(_camera(site, c, reach, level, background, scale, gamma, cfg)).mean()
                                    for site in survey]))
        miss = (max(round(abs(fraction - foreground), 3), tolerance), abs(reach))
        if miss < best[:2]:
            best = (*miss, gamma, scale, reach)
    return best[2], best[3], best[4], level


def _camera(site: _Survey, c: int, reach: float, level: float, background: float, scale: float, gamma: float,
            cfg: SynthConfig) -> np.ndarray:
    """Channel ``c`` of a survey site as :func:`~rxlib.synth.render.acquire` records it with these settings:
    gain, illumination, offset, shot and read noise, rounded to 8 bits (no cue)."""
    signal = spread_stain(site.clean.signal[c], site.fill, reach, level)
    value = expose(signal, gamma, background, scale, site.gain[c], site.fields[c], site.offset[c])
    return record(value, site.noise[:, c], cfg.photons_per_level, cfg.read_noise)


# ---------------------------------------------------------------------------------------------
# One site


def _class_ranks(classes: list[ClassSpec]) -> dict[int, int]:
    present = [c.class_id for c in classes if not c.junk]
    return {cid: i for i, cid in enumerate(present)}


def cue_drawn(state: dict[str, Any], task: SiteTask) -> bool:
    """Whether the spurious cue is drawn on a site: training experiments only, with ``cue_probability``."""
    if not state["spurious_cue"] or task.dataset != "train":
        return False
    rng = stream_rng(state["seed"], STREAM_SITE, task.experiment_index, task.plate, task.well_index, task.site, 1)
    return bool(rng.random() < state["cfg"].cue_probability)


def _density(rng: np.random.Generator, cfg: SynthConfig) -> float:
    """Site-level multiplier of the expected number of cells: the first draw of the site's generator."""
    return float(np.exp(rng.normal(0.0, cfg.density_jitter)))


def _render_clean(rng: np.random.Generator, cfg: SynthConfig, cell_type: str, spec: ClassSpec,
                  density: float = 1.0) -> CleanSite:
    """The cells of a site through the optics (point-spread blur and haze; none in older profiles)."""
    density = density * cfg.density_scale[CELL_TYPES.index(cell_type)]
    clean = render_cells(rng, cfg.image_size, cfg.cell_scale, CELL_TYPE_SHAPES[cell_type], spec, density,
                         texture=cfg.texture, clustering=cfg.clustering,
                         nucleus_scale=cfg.nucleus_scale[CELL_TYPES.index(cell_type)],
                         nucleus_jitter=cfg.nucleus_jitter[CELL_TYPES.index(cell_type)])
    clean.signal = optics(clean.signal, cfg.psf_sigma, cfg.haze)
    return clean


def _clean_site(state: dict[str, Any], task: SiteTask) -> tuple[CleanSite, np.random.Generator]:
    """A site's cells through the optics, and its generator (whose next draws are the camera's)."""
    cfg: SynthConfig = state["cfg"]
    rng = stream_rng(state["seed"], STREAM_SITE, task.experiment_index, task.plate, task.well_index, task.site)
    density = _density(rng, cfg)
    return _render_clean(rng, cfg, task.cell_type, state["classes"][task.class_id], density), rng


def _camera_settings(state: dict[str, Any], task: SiteTask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A site's per-channel gain, illumination fields (6, S, S) and offset."""
    cfg: SynthConfig = state["cfg"]
    exp = state["experiments"][task.experiment]
    plate = state["plates"][f"{task.experiment}_{task.plate}"]
    well = state["wells"][f"{task.experiment}_{task.plate}_{task.well}"]
    gain = np.asarray(exp["gain"]) * np.asarray(plate["gain"]) * np.asarray(well)
    fields = np.stack([
        illumination_field(cfg.image_size, exp["vignette"][c], exp["illumination_centre"][c], plate["tilt"][c])
        for c in range(N_CHANNELS)])
    return gain, fields, np.asarray(exp["offset"])


def render_site(state: dict[str, Any], task: SiteTask) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Images (6, S, S) uint8, cell labels uint16, phenotype mask uint8 (0/255) and the cell count."""
    cfg: SynthConfig = state["cfg"]
    clean, rng = _clean_site(state, task)
    gain, fields, offset = _camera_settings(state, task)
    calib = state["calibration"][task.cell_type]
    if "reach" in calib:  # the realistic profile's foreground calibration
        fill = cell_fill(clean.labels, cfg.psf_sigma)
        for c in range(N_CHANNELS):
            clean.signal[c] = spread_stain(clean.signal[c], fill, calib["reach"][c], calib["level"][c])
    cue = None
    if cue_drawn(state, task):
        ranks = state["class_ranks"]
        cue = cfg.cue_amplitude * cue_pattern(cfg.image_size, ranks[task.class_id], len(ranks))
    images = acquire(rng, clean, np.asarray(calib["background"]), np.asarray(calib["scale"]),
                     np.asarray(calib["gamma"]), gain, offset, fields, cfg.photons_per_level, cfg.read_noise, cue,
                     cfg.cue_channel)
    return images, clean.labels, clean.phenotype.astype(np.uint8) * 255, clean.n_cells


def _site_row(state: dict[str, Any], task: SiteTask, n_cells: int, phenotype_pixels: int) -> dict[str, Any]:
    exp = state["experiments"][task.experiment]
    plate = state["plates"][f"{task.experiment}_{task.plate}"]
    well = state["wells"][f"{task.experiment}_{task.plate}_{task.well}"]
    gain = np.asarray(exp["gain"]) * np.asarray(plate["gain"]) * np.asarray(well)
    row: dict[str, Any] = {
        "site_id": f"{task.experiment}_{task.plate}_{task.well}_{task.site}",
        "sirna_id": task.class_id,
        "n_cells": n_cells,
        "density": round(_density(stream_rng(state["seed"], STREAM_SITE, task.experiment_index, task.plate,
                                             task.well_index, task.site), state["cfg"]), 5),
        "phenotype_pixels": phenotype_pixels,
        "cue_drawn": cue_drawn(state, task),
    }
    for c in range(N_CHANNELS):
        row[f"gain_w{c + 1}"] = round(float(gain[c]), 5)
    for c in range(N_CHANNELS):
        row[f"offset_w{c + 1}"] = exp["offset"][c]
    for c in range(N_CHANNELS):
        row[f"vignette_w{c + 1}"] = exp["vignette"][c]
    return row


def _check_site_files(state: dict[str, Any], files: list[Path]) -> tuple[np.ndarray, np.ndarray] | None:
    """Decode a finished site's eight files; None (with a warning naming the file) if one fails."""
    size = (state["cfg"].image_size, state["cfg"].image_size)
    try:
        for path in files[:N_CHANNELS]:
            read_png(path, expected_shape=size)
        return read_mask_png(files[6], expected_shape=size), read_mask_png(files[7], expected_shape=size)
    except RxRx1DataError as exc:
        warnings.warn(f"resume: {exc}; the site is drawn again", RuntimeWarning, stacklevel=3)
        return None


def process_site(state: dict[str, Any], task: SiteTask) -> dict[str, Any]:
    """Render and write one site unless all its files exist and decode; return its ``sites.csv`` row.

    A site whose files all exist is checked (every file decoded, at the set's image size); one that
    fails the check (e.g. a truncated PNG) is drawn and written again, with a warning naming the file.
    """
    out = Path(state["out"])
    files = site_files(out, task)
    if all(p.is_file() for p in files):
        checked = _check_site_files(state, files)
        if checked is not None:
            labels, phenotype = checked
            return _site_row(state, task, int(labels.max()), int((phenotype > 0).sum()))
    record_written(out, files)  # before writing: whatever is left on disk is listed
    images, labels, phenotype, n_cells = render_site(state, task)
    for c in range(N_CHANNELS):
        write_png(files[c], images[c])
    write_png(files[6], labels)
    write_png(files[7], phenotype)
    return _site_row(state, task, n_cells, int((phenotype > 0).sum()))


_WORKER_STATE: dict[str, Any] | None = None


def _init_worker(state: dict[str, Any]) -> None:
    global _WORKER_STATE
    _WORKER_STATE = state


def _worker(task: SiteTask) -> tuple[int, dict[str, Any]]:
    assert _WORKER_STATE is not None, "worker used before _init_worker"
    return task.index, process_site(_WORKER_STATE, task)


# ---------------------------------------------------------------------------------------------
# Tables


def classes_table(cfg: SynthConfig, design: Design) -> pd.DataFrame:
    """``truth/classes.csv``: one row per class id with its planted phenotype and channel importance."""
    train = {t.class_id for t in design.tasks if t.dataset == "train"}
    test = {t.class_id for t in design.tasks if t.dataset == "test"}
    rows = []
    for spec in design.classes:
        importance = spec.importance()
        row = {
            "class_id": spec.class_id,
            "sirna": spec.sirna,
            "kind": spec.kind,
            "junk": spec.junk,
            "in_train": spec.class_id in train,
            "in_test": spec.class_id in test,
            "compartment": ";".join(e.compartment for e in spec.effects),
            "effect": ";".join(e.effect for e in spec.effects) or "none",
            "channels": ";".join(f"w{e.channel}" for e in spec.effects),
            "strength": ";".join(f"{e.strength:g}" for e in spec.effects),
            "penetrance": spec.penetrance,
        }
        for c in range(N_CHANNELS):
            row[f"importance_w{c + 1}"] = round(float(importance[c]), 6)
        rows.append(row)
    return pd.DataFrame(rows)


def metadata_table(design: Design) -> pd.DataFrame:
    """``metadata.csv`` in the official RxRx1 column order (test experiments carry labels too)."""
    specs = design.classes
    rows = [{
        "site_id": f"{t.experiment}_{t.plate}_{t.well}_{t.site}",
        "well_id": f"{t.experiment}_{t.plate}_{t.well}",
        "cell_type": t.cell_type,
        "dataset": t.dataset,
        "experiment": t.experiment,
        "plate": t.plate,
        "well": t.well,
        "site": t.site,
        "well_type": specs[t.class_id].kind,
        "sirna": specs[t.class_id].sirna,
        "sirna_id": t.class_id,
    } for t in design.tasks]
    frame = pd.DataFrame(rows, columns=METADATA_COLUMNS)
    return frame.sort_values(["experiment", "plate", "well", "site"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Entry point


def _identity(profile: str, seed: int, spurious_cue: bool, cfg: SynthConfig) -> dict[str, Any]:
    return {"format": FORMAT, "profile": profile, "seed": int(seed), "spurious_cue": bool(spurious_cue),
            "config": cfg.to_dict()}


def _legacy_file(rel: str) -> bool:
    """A file name a synthetic set written before ``.rxlib-written.txt`` existed holds (or its ``.part``)."""
    folder, _, name = rel.rpartition("/")
    if name.startswith(".") and name.endswith(".part"):
        rel = (folder + "/" if folder else "") + name[1:-len(".part")].rpartition(".")[0]
    return bool(_LEGACY_NAMES.match(rel))


def _check_folder(folder: OutputFolder) -> None:
    """Refuse a folder holding anything rxlib did not write (a synthetic set from before the record
    existed, with only the names this generator writes and a ``truth/params.json`` of its format, is
    adopted: its files are recorded)."""
    out = folder.path
    if out.exists() and not out.is_dir():
        raise SynthParameterMismatch(f"{out} exists and is not a folder; choose another output folder")
    params = out / "truth" / "params.json"
    legacy = not folder.record_path.is_file() and params.is_file() and _params_format(params) == FORMAT
    hint = "" if params.is_file() or folder.record_path.is_file() else \
        " (no truth/params.json: not a synthetic set made by rxlib)"
    try:
        folder.refuse_foreign(hint=hint, also_ours=_legacy_file if legacy else None)
    except ForeignFilesError as exc:
        raise SynthFolderNotOurs(str(exc)) from None


def _params_format(params: Path) -> str | None:
    try:
        return json.loads(params.read_text()).get("format")
    except (ValueError, OSError, AttributeError):
        return None


def _adopt_legacy(folder: OutputFolder) -> None:
    """Record the files of a synthetic set written before the record existed (already checked)."""
    if folder.record_path.is_file() or not (folder.path / "truth" / "params.json").is_file():
        return
    files = [p.relative_to(folder.path).as_posix() for p in sorted(folder.path.rglob("*")) if p.is_file()]
    folder.record(*[f for f in files if _legacy_file(f) and not f.endswith(".part")])


def _prepare_folder(folder: OutputFolder, identity: dict[str, Any], overwrite: bool) -> None:
    out = folder.path
    params = out / "truth" / "params.json"
    _check_folder(folder)
    _adopt_legacy(folder)
    if overwrite:
        folder.remove_written()
        return
    if params.is_file():
        try:
            existing = json.loads(params.read_text())
        except ValueError as exc:
            raise SynthParameterMismatch(f"{params}: unreadable ({exc}); pass overwrite=True to start again") from exc
        old = {k: existing.get(k) for k in identity}
        if old != identity:
            diffs = [k for k in identity if old.get(k) != identity[k]]
            if "config" in diffs:
                diffs.remove("config")
                diffs += [f"config.{k}" for k in identity["config"]
                          if (existing.get("config") or {}).get(k) != identity["config"][k]]
            raise SynthParameterMismatch(
                f"{out} holds a synthetic set made with other parameters (differing: {', '.join(diffs)}); "
                f"choose another folder or pass overwrite=True")
    elif (out / "metadata.csv").exists() or (out / "images").exists():
        raise SynthParameterMismatch(
            f"{out} holds images or metadata.csv but no truth/params.json: not a complete synthetic set; "
            f"choose another folder or pass overwrite=True")


def generate(out: str | Path, profile: str = "smoke", seed: int = 0, spurious_cue: bool = False,
             workers: int = 1, progress: bool = True, overwrite: bool = False, **overrides: Any) -> Path:
    """Generate (or finish) a synthetic RxRx1 set in ``out`` and return ``out``.

    Args:
        out: output folder (created if needed).
        profile: a key of :data:`rxlib.synth.PROFILES` (``smoke``, ``cpu``, ``rxrx1``).
        seed: non-negative integer; the same seed and parameters give the same bytes.
        spurious_cue: draw a label-tied pattern in the background of training sites.
        workers: processes (spawn); the output does not depend on it.
        progress: show a tqdm progress bar.
        overwrite: remove a previous set in ``out``: only the files rxlib recorded in
            ``.rxlib-written.txt`` (see :mod:`rxlib.outputs`).
        **overrides: :class:`SynthConfig` fields replacing the profile's values, e.g. ``image_size=32``.

    Returns:
        ``out`` as a Path. A complete set is returned at once; a partial one with the same parameters is
        resumed (sites whose files all exist and decode are kept; others are drawn again).

    Raises:
        ValueError: bad profile, override, seed or workers (the message names it).
        SynthFolderNotOurs: ``out`` holds files or folders rxlib did not write (even with ``overwrite``);
            nothing is changed.
        SynthParameterMismatch: ``out`` holds a set made with other parameters and ``overwrite`` is False.
        rxlib.outputs.OutputFolderBusy: another process is writing ``out``.
        rxlib.io.DiskFullError: no space left on the device ("no space left on device", naming ``out``);
            no ``metadata.csv`` is written, so the set never looks finished, and a rerun resumes.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    cfg = resolve_config(profile, overrides)
    out = Path(out)
    identity = _identity(profile, int(seed), spurious_cue, cfg)
    _check_folder(OutputFolder(out, "rxlib synth"))  # before creating anything: refuse a user's folder
    try:
        with claim_output_folder(out, "rxlib synth") as folder:
            return _generate_locked(folder, identity, cfg, profile, int(seed), spurious_cue, workers, progress,
                                    overwrite)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(out / (exc.filename or "."), exc) from exc
        raise


def _generate_locked(folder: OutputFolder, identity: dict[str, Any], cfg: SynthConfig, profile: str, seed: int,
                     spurious_cue: bool, workers: int, progress: bool, overwrite: bool) -> Path:
    out = folder.path
    _prepare_folder(folder, identity, overwrite)
    if (out / "metadata.csv").is_file() and (out / "truth" / "params.json").is_file():
        folder.finalise()
        return out  # finished set with the same parameters

    folder.remove_partial()
    design = build_design(cfg, seed)
    calibration = calibrate(cfg, seed, design.classes, design)
    params = {
        **identity,
        "image_size": cfg.image_size,
        "n_classes": cfg.n_classes,
        "n_sites_total": len(design.tasks),
        "cell_type_shapes": {ct: asdict(CELL_TYPE_SHAPES[ct]) for ct, _, _ in cfg.experiments},
        "calibration": calibration,
        "experiments": design.experiments,
        "plates": design.plates,
        "wells": design.wells,
        "notes": {
            "gain": "site gain = experiment gain * plate gain * well gain, per channel w1..w6",
            "value": "pixel = gain * illumination * (background + scale * signal ** gamma) + offset, then shot + read noise",
            "illumination": "1 - vignette * ((x-cx)^2 + (y-cy)^2) / 0.5 + tilt_x * x + tilt_y * y, x, y in [-0.5, 0.5]",
            "calibration_source": "REAL_MEAN / REAL_P1 / REAL_NUCLEI_PER_FIELD in rxlib.synth.config, measured on "
                                  "../shared/rxrx1/kaggle-2023 (180 real negative-control PNGs)",
        },
    }
    folder.record("truth/params.json", "truth/classes.csv")
    write_json(out / "truth" / "params.json", params)
    write_csv(out / "truth" / "classes.csv", classes_table(cfg, design))

    state = {
        "cfg": cfg, "seed": seed, "out": str(out), "spurious_cue": bool(spurious_cue),
        "classes": design.classes, "class_ranks": _class_ranks(design.classes),
        "experiments": design.experiments, "plates": design.plates, "wells": design.wells,
        "calibration": calibration,
    }
    rows: list[dict[str, Any] | None] = [None] * len(design.tasks)
    with tqdm(total=len(design.tasks), desc=f"synth {profile}", unit="site", disable=not progress) as bar:
        if workers == 1:
            for task in design.tasks:
                rows[task.index] = process_site(state, task)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(int(workers), initializer=_init_worker, initargs=(state,)) as pool:
                for index, row in pool.imap_unordered(_worker, design.tasks, chunksize=8):
                    rows[index] = row
                    bar.update()
    sites = pd.DataFrame(rows)
    meta = metadata_table(design)
    sites = meta[["site_id", "experiment", "plate", "well", "site", "dataset", "cell_type"]].merge(
        sites, on="site_id", how="left", validate="one_to_one")
    folder.record("truth/sites.csv", "metadata.csv")
    write_csv(out / "truth" / "sites.csv", sites)
    write_csv(out / "metadata.csv", meta)  # last: its presence marks a finished set
    folder.finalise()
    return out
