"""One pass over a data set that reports every problem it finds, instead of stopping at the first.

Problems are returned as a table (kind, site_id, path, message); nothing is dropped silently:
each metadata row whose images are all absent is reported once as ``no_images`` (``wrong_case``
where a folder or file of the same name in another letter case exists: ``plate1/`` for
``Plate1/``), a site missing only some channels gets one ``missing_channel`` row per absent file,
and with ``decode=True`` every existing file goes through :func:`rxlib.io.read_png` (header first,
then decoded) and is checked for format, mode and size (``corrupt_image``, ``wrong_mode``,
``wrong_size``).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..io import CorruptImageError, ImageModeError, ImageShapeError, read_png, wrong_case
from .images import channel_paths

PROBLEM_COLUMNS = ["kind", "site_id", "path", "message"]


def scan(root: str | Path, table: pd.DataFrame, *, decode: bool = True,
         expected_size: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Check every site of ``table`` under ``root``; return one row per problem found.

    Args:
        decode: also decode each existing PNG (slower; finds corrupt, truncated and mis-sized files).
        expected_size: side length every image must have; None: the size of the first readable image.
    """
    root = Path(root)
    problems: list[tuple[str, str, str, str]] = []
    shape = (expected_size, expected_size) if expected_size else None
    listings: dict = {}
    for site_id, stem in tqdm(zip(table["site_id"], table["image_stem"]), total=len(table),
                              desc="scan", unit="site", disable=not progress):
        paths = channel_paths(root, stem)
        present = [p.is_file() for p in paths]
        if not any(present):
            hint = wrong_case(paths[0], listings)
            if hint:
                problems.append(("wrong_case", site_id, str(paths[0]), hint))
            else:
                problems.append(("no_images", site_id, str(root / f"{stem}_w*.png"),
                                 "metadata row has no image files"))
            continue
        for path, ok in zip(paths, present):
            if not ok:
                problems.append(("missing_channel", site_id, str(path), f"missing image file: {path}"))
            elif decode:
                try:
                    image = read_png(path, expected_shape=shape)
                    shape = shape or image.shape
                except CorruptImageError as exc:
                    problems.append(("corrupt_image", site_id, str(path), str(exc)))
                except ImageModeError as exc:
                    problems.append(("wrong_mode", site_id, str(path), str(exc)))
                except ImageShapeError as exc:
                    problems.append(("wrong_size", site_id, str(path), str(exc)))
    return pd.DataFrame(problems, columns=PROBLEM_COLUMNS)


def summarise_problems(problems: pd.DataFrame) -> pd.DataFrame:
    """Counts per kind of problem, with one example each."""
    if problems.empty:
        return pd.DataFrame(columns=["kind", "count", "example"])
    grouped = problems.groupby("kind", sort=True)
    return pd.DataFrame({"count": grouped.size(), "example": grouped["message"].first()}).reset_index()
