"""What every notebook does first: resolve its parameters into paths and make sure the data exist.

A notebook's tagged ``parameters`` cell holds flat values (profile, data root, seed, output
folders); papermill overrides them. ``setup`` turns them into a :class:`NotebookContext`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import config

#: The paper's Table 1 as printed (Sharma & Krishnamurthi 2022, section 2.3). Its S_32 and S_33
#: (31 and 1065) sum with S_29 and S_31 to 1,100 classes, not the 1,108 of RxRx1.
PAPER_TABLE1 = {29: 2, 31: 2, 32: 31, 33: 1065}


@dataclass(frozen=True)
class NotebookContext:
    """Resolved notebook parameters."""

    profile: str
    seed: int
    data_root: Path
    figures_dir: Path
    reports_dir: Path
    real_root: Path | None
    synthetic: bool


def setup(profile: str = "smoke", data_root: str = "", seed: int = 0, figures_dir: str = "",
          reports_dir: str = "", real_root: str = "") -> NotebookContext:
    """Resolve a notebook's parameters; generate the synthetic data set of the profile if needed.

    Args:
        data_root: a data root; "" means ``RXLIB_DATA`` if set, else the synthetic set of
            ``profile`` and ``seed`` (generated once, in :func:`rxlib.config.synthetic_root`).
        real_root: the real RxRx1 pieces in the Kaggle 2023 layout; "" means
            ``<shared>/kaggle-2023`` when present, else None.
    """
    from .reproduce import resolve_data_root

    root = resolve_data_root(profile, seed, data_root or None)
    real = Path(real_root) if real_root else config.shared_rxrx1_dir() / "kaggle-2023"
    return NotebookContext(
        profile=profile, seed=seed, data_root=Path(root),
        figures_dir=Path(figures_dir) if figures_dir else config.figures_dir(),
        reports_dir=Path(reports_dir) if reports_dir else config.reports_dir(),
        real_root=real if (real / "train.csv").is_file() else None,
        synthetic=(Path(root) / "truth" / "classes.csv").is_file(),
    )
