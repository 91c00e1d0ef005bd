"""Which data set a run reads: the data root, and the real RxRx1 pieces beside the project.

:func:`resolve_data_root` is the one place that turns a profile, a seed and an optional folder into a
data root; ``rxlib reproduce`` (:mod:`rxlib.reproduce`) and every notebook (:func:`rxlib.notebook.setup`)
call it. The order is: the folder given; else ``RXLIB_DATA`` (:func:`rxlib.config.data_root_override`);
else the synthetic data set of the profile and seed in :func:`rxlib.config.synthetic_root`, generated
by :func:`rxlib.synth.generate` on first use. Profiles that run on the real RxRx1
(:data:`NO_AUTOGENERATE_PROFILES`) never fall back to a synthetic set.

:func:`resolve_real_root` finds the real RxRx1 pieces (Kaggle 2023 layout) that notebook 01 compares
the synthetic set with.

The environment variables themselves are read in :mod:`rxlib.config`; nothing here runs on import.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from rxlib import config

#: Profiles whose data set is the real RxRx1, never generated: a data root must be given.
NO_AUTOGENERATE_PROFILES: frozenset[str] = frozenset({"rxrx1", "paper"})
#: The synthetic profile (:data:`rxlib.synth.PROFILES`) generated for a training profile when no data root
#: is given; a name not listed here is taken as a synthetic profile itself (``cpu``).
SYNTHETIC_PROFILE: dict[str, str] = {"smoke": "smoke", "paper-mini": "paper-mini"}


def synthetic_profile(profile: str) -> str:
    """The synthetic profile generated for training profile ``profile`` (see :data:`SYNTHETIC_PROFILE`)."""
    return SYNTHETIC_PROFILE.get(profile, profile)


def resolve_data_root(
    profile: str,
    seed: int,
    data_root: str | os.PathLike | None = None,
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """The data root to run on, generating the synthetic data set of ``profile`` if it is needed.

    Order: ``data_root``; else ``RXLIB_DATA``; else :func:`rxlib.config.synthetic_root` of the
    profile's synthetic set (:func:`synthetic_profile`) and seed, generated with
    :func:`rxlib.synth.generate` if its ``metadata.csv`` is absent (not in a dry run).

    Args:
        profile: the training profile (``smoke``, ``paper-mini``, ``paper``, ``rxrx1``) or a synthetic one.
        seed: the seed of the synthetic set.
        data_root: a data set folder; None for ``RXLIB_DATA`` or the synthetic set.
        dry_run: only say that the synthetic set would be generated (through ``log``).
        log: receives one line before and after generating.

    Raises:
        FileNotFoundError: an explicit data root does not exist, or the generator wrote no ``metadata.csv``.
        ValueError: the profile is one of :data:`NO_AUTOGENERATE_PROFILES` and no data root is given.
    """
    explicit = Path(data_root).expanduser().resolve() if data_root is not None else config.data_root_override()
    if explicit is not None:
        if not explicit.is_dir():
            raise FileNotFoundError(f"data root does not exist or is not a folder: {explicit}")
        return explicit
    if profile in NO_AUTOGENERATE_PROFILES:
        raise ValueError(
            f"profile {profile!r} runs on the real RxRx1 data set, which is not generated: pass "
            "data_root=... (or --data, or set RXLIB_DATA) pointing at a local copy of RxRx1"
        )
    synth = synthetic_profile(profile)
    root = config.synthetic_root(synth, seed)
    if (root / "metadata.csv").is_file():
        return root
    if dry_run:
        log(f"would generate the synthetic data set (profile={synth!r}, seed={seed}) in {root}")
        return root
    log(f"generating the synthetic data set (profile={synth!r}, seed={seed}) in {root} ...")
    from rxlib.synth import generate  # lazy: heavy, and only needed on first use

    started = time.perf_counter()
    generate(root, profile=synth, seed=seed, workers=os.cpu_count() or 1)  # same bytes for any worker count
    if not (root / "metadata.csv").is_file():
        raise FileNotFoundError(f"rxlib.synth.generate finished but wrote no {root / 'metadata.csv'}")
    log(f"generated in {time.perf_counter() - started:.1f} s")
    return root


def resolve_real_root(real_root: str | os.PathLike | None = None) -> Path | None:
    """The real RxRx1 pieces in the Kaggle 2023 layout: ``real_root`` if given, else
    ``<shared>/kaggle-2023`` (:func:`rxlib.config.shared_rxrx1_dir`); None when that folder has no
    ``train.csv`` (the real pieces are optional)."""
    real = Path(real_root) if real_root else config.shared_rxrx1_dir() / "kaggle-2023"
    return real if (real / "train.csv").is_file() else None


__all__ = ["NO_AUTOGENERATE_PROFILES", "SYNTHETIC_PROFILE", "resolve_data_root", "resolve_real_root",
           "synthetic_profile"]
