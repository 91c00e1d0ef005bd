"""Reading the six channel PNGs of one imaging site.

Every channel is read with Pillow on its own and stacked, so ``load_site`` returns exactly what
reading each PNG separately gives. A missing channel, a corrupt or truncated PNG, an image of the
wrong size and channels of unequal sizes each raise an error that names the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import N_CHANNELS
from ..io import ImageShapeError, MissingImageError, read_png, wrong_case

IMAGE_FOLDERS = ("images", "train", "test")


def channel_paths(root: str | Path, image_stem: str) -> list[Path]:
    """The six PNG paths ``{root}/{image_stem}_w{c}.png`` of a site, c = 1..6."""
    return [Path(root) / f"{image_stem}_w{c}.png" for c in range(1, N_CHANNELS + 1)]


def find_site_stem(root: str | Path, experiment: str, plate: int, well: str, site: int) -> str:
    """The image stem of a site relative to ``root``, whichever layout holds it.

    Looks in ``images/`` (official release), then ``train/`` and ``test/`` (Kaggle layout).

    Raises:
        MissingImageError: if no layout folder holds a first channel for the site.
    """
    root = Path(root)
    tail = f"{experiment}/Plate{int(plate)}/{well}_s{int(site)}"
    for folder in IMAGE_FOLDERS:
        stem = f"{folder}/{tail}"
        if any(p.is_file() for p in channel_paths(root, stem)):
            return stem
    tried = ", ".join(str(root / f"{f}/{tail}_w1.png") for f in IMAGE_FOLDERS)
    hints = [h for h in (wrong_case(root / f"{f}/{tail}_w1.png") for f in IMAGE_FOLDERS) if h]
    raise MissingImageError(f"no images for site {experiment} plate {plate} {well} s{site}: tried {tried}"
                            + (f" ({hints[0]})" if hints else ""))


def load_site_stem(root: str | Path, image_stem: str, expected_size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read the six channels ``{root}/{image_stem}_w{1..6}.png`` as a uint8 array (6, H, W).

    Args:
        expected_size: side length or (height, width) every channel must have; None accepts any
            size as long as all six channels agree.

    Raises:
        MissingImageError, CorruptImageError, ImageShapeError: naming the offending file.
    """
    if isinstance(expected_size, int):
        expected_size = (expected_size, expected_size)
    channels = []
    for path in channel_paths(root, image_stem):
        array = read_png(path, expected_shape=expected_size)
        if array.dtype != np.uint8:
            raise ImageShapeError(f"{path}: expected an 8-bit image, got {array.dtype}")
        if channels and array.shape != channels[0].shape:
            raise ImageShapeError(f"{path}: image is {array.shape[0]}x{array.shape[1]}, but channel w1 of "
                                  f"the same site is {channels[0].shape[0]}x{channels[0].shape[1]} "
                                  f"({channel_paths(root, image_stem)[0]})")
        channels.append(array)
    return np.stack(channels)


def load_site(root: str | Path, experiment: str, plate: int, well: str, site: int,
              expected_size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Six channels of one site as uint8 (6, H, W), channel order w1..w6, from any layout.

    Example:
        >>> load_site(root, "HEPG2-01", 1, "B02", 1).shape
        (6, 512, 512)
    """
    stem = find_site_stem(root, experiment, plate, well, site)
    return load_site_stem(root, stem, expected_size)


def wrong_case_sites(root: str | Path, stems, limit: int = 5) -> list[str]:
    """For sites none of whose channel files exist: up to ``limit`` sentences naming the expected path
    of a site whose folder or file exists under another letter case (``plate1/`` for ``Plate1/``)."""
    listings: dict = {}
    found: list[str] = []
    by_folder: dict[str, list[str]] = {}
    for stem in stems:
        folder, _, name = str(stem).rpartition("/")
        by_folder.setdefault(folder, []).append(name)
    for folder, names in by_folder.items():
        # a missing folder: one check for all its sites; an existing one: the file names
        base = Path(root) / folder
        for name in (names if base.is_dir() else names[:1]):
            path = base / f"{name}_w1.png"
            hint = wrong_case(path, listings)
            if hint and hint not in found:
                found.append(hint)
            if len(found) >= limit:
                return found
    return found


def missing_channels(root: str | Path, image_stem: str) -> list[int]:
    """Channel numbers (1-based) whose PNG is absent for a site."""
    return [c for c, p in enumerate(channel_paths(root, image_stem), start=1) if not p.is_file()]
