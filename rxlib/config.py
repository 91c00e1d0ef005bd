"""Paths and profiles, from one place.

The repository root is derived from this file, never from the current working directory. Environment
variables override the defaults:

- ``RXLIB_DATA``: a data root to use instead of the embedded synthetic data set.
- ``RXLIB_CACHE``: where generated synthetic data sets, trained models and caches live
  (default ``<repo>/data``).
- ``RXLIB_FIGURES`` / ``RXLIB_REPORTS``: output folders (default ``<repo>/figures`` and ``<repo>/reports``).
- ``RXLIB_SHARED``: the folder holding the real RxRx1 pieces (default ``<repo>/../shared/rxrx1``).

Nothing is created on import.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"

#: Cell types of RxRx1, in the order of the one-hot vector given to the network.
CELL_TYPES: tuple[str, ...] = ("HEPG2", "HUVEC", "RPE", "U2OS")
#: Channel names, w1..w6 (RxRx1 Cell Painting protocol).
CHANNELS: tuple[str, ...] = (
    "Hoechst (nuclei)",
    "ConA (endoplasmic reticulum)",
    "Phalloidin (actin)",
    "Syto14 (nucleoli, cytoplasmic RNA)",
    "MitoTracker (mitochondria)",
    "WGA (Golgi, plasma membrane)",
)
N_CHANNELS = len(CHANNELS)
#: The 1139-class convention of RxRx1: 0-1107 treatments, 1108-1137 positive controls, 1138 negative.
N_TREATMENTS_RXRX1 = 1108
N_POSITIVE_CONTROLS_RXRX1 = 30
N_CLASSES_RXRX1 = 1139


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def cache_dir() -> Path:
    """Folder for generated data sets, trained models and caches (ignored by git)."""
    return _env_path("RXLIB_CACHE", PROJ_ROOT / "data")


def figures_dir() -> Path:
    return _env_path("RXLIB_FIGURES", PROJ_ROOT / "figures")


def reports_dir() -> Path:
    return _env_path("RXLIB_REPORTS", PROJ_ROOT / "reports")


def shared_rxrx1_dir() -> Path:
    """The real RxRx1 pieces beside the project (may not exist)."""
    return _env_path("RXLIB_SHARED", PROJ_ROOT.parent / "shared" / "rxrx1")


def data_root_override() -> Path | None:
    """The data root named by ``RXLIB_DATA``, or None for the embedded synthetic data."""
    value = os.environ.get("RXLIB_DATA")
    return Path(value).expanduser().resolve() if value else None


def synthetic_root(profile: str, seed: int) -> Path:
    """Where the synthetic data set of a profile and seed is kept (:func:`rxlib.data.roots.resolve_data_root`)."""
    return cache_dir() / "synthetic" / f"{profile}-seed{seed}"
