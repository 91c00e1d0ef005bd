"""A decoded-image cache: the six channels of many sites as one uint8 array on disk, memory-mapped.

Decoding six PNGs is most of the cost of reading a site (``benchmarks/bench_loading.py`` measures
it); the cache decodes each site once and later reads are a memory copy from the page cache.

One cache file holds the sites of one list of image stems under one data root, in that order, as a
``.npy`` array ``(N, 6, H, W)`` uint8 under ``rxlib.config.cache_dir()/site_cache/`` (or a folder you
give). Its name is a hash of the data root, the stems and, for every channel file, its size and
modification time, and of ``metadata.csv``: changing an image or the metadata gives another name, so a
stale cache is never read (old files are left for you to delete; :func:`clear_site_cache`). It is
written under a temporary name and renamed when complete, so a killed build is never taken for a
finished one.

Example:
    >>> cache = SiteCache.build(root, table["image_stem"])          # doctest: +SKIP
    >>> cache[0].shape                                              # doctest: +SKIP
    (6, 512, 512)
    >>> RxRx1Dataset(root, cache=True)                              # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import N_CHANNELS, cache_dir
from ..io import atomic_path
from .images import channel_paths, load_site_stem

CACHE_VERSION = 1


def site_cache_dir() -> Path:
    """Default folder of the cache files (``cache_dir()/site_cache``; ``RXLIB_CACHE`` moves it)."""
    return cache_dir() / "site_cache"


def cache_key(root: str | os.PathLike, stems: Sequence[str], expected_size: int | None = None) -> str:
    """24 hex digits identifying the decoded content: data root, stems, each channel file's size and
    mtime, and ``metadata.csv``'s bytes where present.

    Raises:
        MissingImageError: a channel file does not exist (names it).
    """
    from ..io import MissingImageError

    root = Path(root).resolve()
    digest = hashlib.sha256(f"v{CACHE_VERSION}\0{root}\0{expected_size}\0".encode())
    meta = root / "metadata.csv"
    if meta.is_file():
        digest.update(hashlib.sha256(meta.read_bytes()).digest())
    for stem in stems:
        digest.update(stem.encode() + b"\0")
        for path in channel_paths(root, stem):
            try:
                st = path.stat()
            except FileNotFoundError:
                raise MissingImageError(f"missing image file: {path}") from None
            digest.update(f"{st.st_size}:{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:24]


class SiteCache:
    """Decoded sites ``(N, 6, H, W)`` uint8, memory-mapped read-only; ``cache[i]`` is site ``stems[i]``."""

    def __init__(self, path: str | os.PathLike, stems: Sequence[str]):
        self.path = Path(path)
        self.stems = list(stems)
        self.array = np.load(self.path, mmap_mode="r")
        if self.array.ndim != 4 or self.array.shape[0] != len(self.stems) or self.array.shape[1] != N_CHANNELS:
            raise ValueError(f"{self.path}: cache holds {self.array.shape}, expected ({len(self.stems)}, "
                             f"{N_CHANNELS}, H, W); delete it to rebuild")

    @classmethod
    def build(cls, root: str | os.PathLike, stems: Sequence[str], *, folder: str | os.PathLike | None = None,
              expected_size: int | None = None, progress: bool = False) -> SiteCache:
        """Open the cache of ``stems`` under ``root``, decoding the PNGs into it first if absent.

        Raises:
            MissingImageError, CorruptImageError, ImageShapeError: a bad image (names the file); no
                cache file is left behind.
            ValueError: no stems, or sites of different sizes.
        """
        stems = [str(s) for s in stems]
        if not stems:
            raise ValueError(f"no sites to cache under {root}")
        folder = Path(folder) if folder is not None else site_cache_dir()
        path = folder / f"sites-{cache_key(root, stems, expected_size)}.npy"
        if not path.is_file():
            first = load_site_stem(root, stems[0], expected_size)
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(stems), *first.shape))
                out[0] = first
                size = first.shape[1:]
                iterator = range(1, len(stems))
                if progress:
                    from tqdm.auto import tqdm

                    iterator = tqdm(iterator, desc="cache sites", initial=1, total=len(stems))
                for i in iterator:
                    out[i] = load_site_stem(root, stems[i], expected_size or size)
                out.flush()
                del out
        return cls(path, stems)

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.array[index])


def clear_site_cache(folder: str | os.PathLike | None = None) -> None:
    """Delete every cache file (the folder :func:`site_cache_dir` by default)."""
    folder = Path(folder) if folder is not None else site_cache_dir()
    if folder.is_dir():
        shutil.rmtree(folder)


__all__ = ["SiteCache", "cache_key", "clear_site_cache", "site_cache_dir"]
