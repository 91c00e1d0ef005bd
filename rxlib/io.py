"""Small file helpers shared by every stage: atomic writes, PNG reading and writing.

A file is written under a temporary name in the same folder and renamed into place only once it is
complete, so an interrupted run never leaves a half-written file under a final name.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once, on first write; os.umask can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


class RxRx1DataError(ValueError):
    """A data file or metadata row is unusable; the message names it."""


class MissingImageError(RxRx1DataError, FileNotFoundError):
    """An expected image file (for example one channel of a site) does not exist."""


class CorruptImageError(RxRx1DataError):
    """An image file exists but cannot be decoded (truncated, not a PNG, ...)."""


class ImageShapeError(RxRx1DataError):
    """An image decodes but has the wrong size, mode or number of channels."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; finished files get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a 2-D uint8 (grey) or uint16 (label image) array as PNG, atomically."""
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: expected a 2-D uint8 or uint16 array, got {image.dtype} {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def read_png(path: str | os.PathLike, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read one single-channel PNG as a 2-D array, with an error that names the file if it is bad.

    Raises:
        MissingImageError: the file does not exist.
        CorruptImageError: it cannot be decoded completely (truncated, not an image).
        ImageShapeError: it is not single-channel, or not of ``expected_shape`` (height, width).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingImageError(f"missing image file: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            array = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptImageError(f"corrupt or truncated image file: {path} ({exc})") from exc
    if array.ndim != 2:
        raise ImageShapeError(f"{path}: expected a single-channel image, got mode {mode} with shape {array.shape}")
    if expected_shape is not None and tuple(array.shape) != tuple(expected_shape):
        raise ImageShapeError(
            f"{path}: image is {array.shape[0]}x{array.shape[1]}, expected {expected_shape[0]}x{expected_shape[1]}"
        )
    return array


def write_csv(path: str | os.PathLike, frame: pd.DataFrame, **kwargs) -> Path:
    """Write a DataFrame as CSV atomically (index dropped unless asked for)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write JSON atomically, keys sorted so that the same object gives the same bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return Path(path)


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
