"""Small file helpers shared by every stage: atomic writes, PNG reading and writing.

A file is written under a temporary name in the same folder and renamed into place only once it is
complete, so an interrupted run never leaves a half-written file under a final name.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import struct
import tempfile
import warnings
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


class ImageModeError(ImageShapeError):
    """A PNG is not of the pixel format asked for (RxRx1 channels are 8-bit grayscale, mode ``L``)."""


class ImageTooLargeError(ImageShapeError):
    """A PNG header declares more pixels than ``MAX_IMAGE_PIXELS``; the file is never decoded."""


class OutputFolderError(ValueError):
    """An output folder cannot be written safely (foreign files, another writer, a full disk)."""


class DiskFullError(OutputFolderError):
    """No space left on the device (or quota exceeded) while writing an output file."""

    errno = errno.ENOSPC


#: Largest image (pixels) any reader decodes: RxRx1 sites are 512x512; 4096x4096 leaves room.
MAX_IMAGE_PIXELS = 4096 * 4096
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG IHDR (colour type, bit depth) -> Pillow mode, and the words an error uses for it.
_PNG_MODES = {(0, 8): "L", (0, 16): "I;16", (0, 1): "1", (0, 2): "L;2", (0, 4): "L;4",
              (2, 8): "RGB", (2, 16): "RGB;16", (3, 1): "P", (3, 2): "P", (3, 4): "P", (3, 8): "P",
              (4, 8): "LA", (4, 16): "LA;16", (6, 8): "RGBA", (6, 16): "RGBA;16"}
_MODE_WORDS = {"L": "8-bit grayscale", "I;16": "16-bit grayscale", "1": "1-bit (black and white)",
               "L;2": "2-bit grayscale", "L;4": "4-bit grayscale", "P": "palette (indexed colour)",
               "RGB": "RGB colour", "RGB;16": "16-bit RGB colour", "LA": "grayscale with alpha",
               "LA;16": "16-bit grayscale with alpha", "RGBA": "RGBA colour", "RGBA;16": "16-bit RGBA colour"}
_OTHER_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF",
                     b"MM\x00*": "TIFF", b"RIFF": "WebP"}


def is_disk_full(exc: BaseException) -> bool:
    """True for the OSErrors of a full device or an exceeded quota."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(path: str | os.PathLike, exc: OSError) -> DiskFullError:
    """The one-line error of a full disk, naming the folder being written and the file."""
    path = Path(path)
    return DiskFullError(f"no space left on device while writing {path.name} in {path.parent} "
                                       f"({exc.strerror or exc}); free some space and run the same command again")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A full disk (``ENOSPC``/``EDQUOT``) becomes a :class:`DiskFullError` naming the folder; either
    way the temporary file is removed, so nothing half-written is left under any name.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; finished files get the usual permissions
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise disk_full_error(path, exc) from exc
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a 2-D uint8 (grey) or uint16 (label image) array as PNG, atomically."""
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: expected a 2-D uint8 or uint16 array, got {image.dtype} {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def wrong_case(path: str | os.PathLike, listings: dict | None = None) -> str | None:
    """For a missing ``path``: a sentence naming the expected path and the existing one that differs
    only in letter case (``plate1/`` for ``Plate1/``), or None if there is no such near miss.

    Args:
        listings: optional cache (folder -> entry names) shared between calls.
    """
    path = Path(path)
    base = path
    while not base.exists():
        if base.parent == base:
            return None
        base = base.parent
    if base == path or not base.is_dir():
        return None
    name = path.relative_to(base).parts[0]
    if listings is None:
        listings = {}
    if base not in listings:
        try:
            listings[base] = {entry.lower(): entry for entry in os.listdir(base)}
        except OSError:
            listings[base] = {}
    found = listings[base].get(name.lower())
    if found is None or found == name:
        return None
    return (f"expected {base / name}, found {base / found}: file and folder names are case-sensitive "
            f"(rename it to {name})")


def missing_image_error(path: str | os.PathLike) -> MissingImageError:
    """``MissingImageError`` naming ``path``, and the near miss if only the letter case differs."""
    hint = wrong_case(path)
    return MissingImageError(f"missing image file: {path}" + (f" ({hint})" if hint else ""))


def png_header(path: str | os.PathLike) -> tuple[int, int, str]:
    """``(height, width, mode)`` from a PNG's signature and IHDR chunk, without decoding it.

    Raises:
        MissingImageError: the file does not exist.
        CorruptImageError: it is not a PNG (named: JPEG, GIF, ... where recognised) or its header is cut.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(33)
    except FileNotFoundError as exc:
        raise missing_image_error(path) from exc
    except IsADirectoryError as exc:
        raise CorruptImageError(f"{path}: is a folder, not an image file") from exc
    except OSError as exc:  # permissions, I/O errors: a named error, not a traceback
        raise CorruptImageError(f"cannot read image file: {path} ({exc.strerror or exc})") from exc
    if not head.startswith(_PNG_SIGNATURE):
        if not head:
            raise CorruptImageError(f"corrupt or truncated image file: {path} (empty file)")
        kind = next((name for sig, name in _OTHER_SIGNATURES.items() if head.startswith(sig)), None)
        what = f"{kind} data" if kind else "not PNG data"
        raise CorruptImageError(f"corrupt or truncated image file: {path} ({what}; RxRx1 images are PNG files)")
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise CorruptImageError(f"corrupt or truncated image file: {path} (PNG header cut short)")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", head[16:26])
    mode = _PNG_MODES.get((colour_type, bit_depth))
    if mode is None:
        raise CorruptImageError(f"corrupt or truncated image file: {path} (invalid PNG colour type "
                                f"{colour_type} with bit depth {bit_depth})")
    return height, width, mode


def read_png(path: str | os.PathLike, expected_shape: tuple[int, int] | None = None, *,
             modes: tuple[str, ...] = ("L",), max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read one single-channel PNG as a 2-D array, with an error that names the file if it is bad.

    The header is checked before anything is decoded: the file must be a PNG (not JPEG bytes named
    ``.png``), of one of ``modes`` (RxRx1 channel images are 8-bit grayscale, ``L``; 16-bit, palette
    and 1-bit PNGs are refused), and at most ``max_pixels`` large.

    Raises:
        MissingImageError: the file does not exist.
        CorruptImageError: it is not a PNG or cannot be decoded completely (truncated).
        ImageModeError: it is a PNG of another pixel format than ``modes``.
        ImageTooLargeError: its header declares more than ``max_pixels`` pixels.
        ImageShapeError: it is not of ``expected_shape`` (height, width).
    """
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise CorruptImageError(f"{path}: is a folder, not an image file")
        raise missing_image_error(path)
    height, width, mode = png_header(path)
    if mode not in modes:
        wanted = " or ".join(f"{_MODE_WORDS.get(m, m)} (mode {m})" for m in modes)
        raise ImageModeError(f"{path}: {_MODE_WORDS.get(mode, mode)} PNG (mode {mode}); expected a "
                             f"single-channel {wanted}")
    if height * width > max_pixels or height == 0 or width == 0:
        raise ImageTooLargeError(f"{path}: PNG header declares {height}x{width} pixels; refusing to decode "
                                 f"images of more than {max_pixels} pixels or of zero size")
    if expected_shape is not None and (height, width) != tuple(expected_shape):
        raise ImageShapeError(
            f"{path}: image is {height}x{width}, expected {expected_shape[0]}x{expected_shape[1]}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                array = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error,
            Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"corrupt or truncated image file: {path} ({exc})") from exc
    if array.ndim != 2 or array.shape != (height, width):
        raise ImageShapeError(f"{path}: expected a single-channel {height}x{width} image, got shape {array.shape}")
    return array


def read_mask_png(path: str | os.PathLike, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a label or mask PNG (8- or 16-bit grayscale), with :func:`read_png`'s checks."""
    return read_png(path, expected_shape, modes=("L", "I;16"))


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
