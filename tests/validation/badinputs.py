"""Helpers for the bad-input battery and the property tests: tiny data sets, bad PNG bytes, hashes."""
from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from rxlib.synth import generate

# 1 experiment x 1 plate x 4 wells x 2 sites of 16x16: a finished set in well under a second.
MICRO = {"image_size": 16, "n_treatments": 2, "n_junk": 0, "n_positive_controls": 1,
         "experiments": (("HEPG2", 1, 0),), "n_plates": 1, "treatment_replicates": 1,
         "negative_control_wells": 1, "calibration_sites": 1}


def make_micro(out: Path, seed: int = 0, **kwargs) -> Path:
    return generate(out, profile="smoke", seed=seed, progress=False, **{**MICRO, **kwargs})


def tree_hashes(root: Path, *, skip_hidden: bool = False) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest); folders as ``<dir>``."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if skip_hidden and any(part.startswith(".rxlib") for part in p.relative_to(root).parts):
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
    return out


def png_bytes(array: np.ndarray | None = None, mode: str | None = None, size: int = 16) -> bytes:
    """PNG bytes of ``array`` (or a random image of ``mode``)."""
    if array is None:
        rng = np.random.default_rng(0)
        if mode == "I;16":
            array = rng.integers(0, 65535, (size, size), dtype=np.uint16)
            image = Image.fromarray(array)
        elif mode in ("1", "P", "RGB", "RGBA", "LA"):
            image = Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).convert(mode)
        else:
            image = Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8))
    else:
        image = Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), 100, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def gif_bytes(size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), 100, np.uint8)).save(buffer, format="GIF")
    return buffer.getvalue()


def png_header_only(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A PNG signature and a valid IHDR declaring ``width`` x ``height``, then a tiny IDAT and IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


def tiny_metadata(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)


def write_metadata(root: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(root / "metadata.csv", index=False)
