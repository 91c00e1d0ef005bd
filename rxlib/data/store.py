"""The site store: the sites of a data root decoded once into one uint8 file, with their statistics.

Decoding six PNGs is most of the cost of reading a site (``benchmarks/bench_loading.py`` measures
it). :func:`prepare_store` decodes every site of a metadata table once, in parallel processes, into

``rxlib.config.cache_dir()/store/<key>/`` (``RXLIB_CACHE`` moves it)::

    sites.u8            the images, (N, 6, H, W) uint8, C order, no header; row i = index row i
    index.csv           row, site_id, image_stem, experiment, plate (the row of each site)
    intensities.npy     (N, 6, 2) float64: mean and std of each channel image, computed while decoding
    stats_experiment.csv, stats_plate.csv
                        per-experiment / per-plate, per-channel mean and std
                        (:func:`rxlib.data.stats.normalisation_stats` of the intensities above)
    chunks/<a>-<b>.npy  one per finished chunk of rows a..b-1 (its intensities): the resume record
    complete.json       shape, dtype and version; written last, so its presence marks a complete store

``key`` hashes the data root's path, the stems, each channel file's size and modification time and
the bytes of ``metadata.csv`` (:func:`store_key`): changed images or metadata give another key, so a
stale store is never read (old folders are left for you to delete; :func:`clear_stores`).

**Resumable.** Sites are decoded in chunks; a chunk's pixels are written into ``sites.u8`` at their
offset and flushed to disk, and only then is its record ``chunks/<a>-<b>.npy`` written (under a temporary
name, then renamed). A killed prepare therefore leaves finished chunks, which the next call keeps, and
at most a few half-written chunks without a record, which it decodes again. Nothing is taken as
complete before ``complete.json`` exists. One process prepares a store at a time (a lock file).

**Statistics.** Each channel image's mean and standard deviation are computed from the decoded
uint8 pixels exactly as :func:`rxlib.data.stats.image_intensities` does, and pooled by the same
:func:`~rxlib.data.stats.normalisation_stats` (exact pooled moments in float64), so a data set read
from PNGs and one read from the store are normalised with bit-identical statistics.

**Reading.** :meth:`SiteStore.read` reads one site with ``os.pread`` at its offset. A memory map of
the whole file would be simpler, but pages of a shared mapping that a process has touched count in
its resident set size (RSS) until the kernel reclaims them, so a DataLoader worker that has walked
over an epoch of a 100 GB store looks (and, under cgroup limits, is charged) as if it held it.
``pread`` copies the 1.5 MB of a 512x512 site into a fresh buffer: the file's pages stay in the page
cache, shared by all processes and dropped under pressure, and each process holds only its batch.

From the shell, ahead of training (``--workers`` processes; the training run then finds it ready)::

    python -m rxlib.data.store DATA_ROOT --workers 16

Example:
    >>> store = prepare_store(root, read_metadata(root), workers=8)      # doctest: +SKIP
    >>> store.read(0).shape                                             # doctest: +SKIP
    (6, 512, 512)
    >>> RxRx1Dataset(root, storage="store", normalize="experiment")       # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import N_CHANNELS, cache_dir
from ..io import MissingImageError, atomic_path
from .images import channel_paths, load_site_stem

STORE_VERSION = 1
#: Sites per chunk: the unit of work of a worker process and of resuming.
CHUNK_SITES = 64
_INDEX_COLUMNS = ["site_id", "image_stem", "experiment", "plate"]


def stores_dir() -> Path:
    """Default folder of the stores (``cache_dir()/store``; ``RXLIB_CACHE`` moves it)."""
    return cache_dir() / "store"


def store_key(root: str | os.PathLike, stems: Sequence[str], expected_size: int | None = None) -> str:
    """24 hex digits identifying the decoded content: data root, stems, each channel file's size and
    mtime, and ``metadata.csv``'s bytes where present.

    Raises:
        MissingImageError: a channel file does not exist (names it).
    """
    root = Path(root).resolve()
    digest = hashlib.sha256(f"store-v{STORE_VERSION}\0{root}\0{expected_size}\0".encode())
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


def site_intensities(site: np.ndarray) -> np.ndarray:
    """(6, 2) float64: mean and std of each channel of a uint8 site, computed as
    :func:`rxlib.data.stats.image_intensities` computes them from each PNG (so they agree bit for bit)."""
    return np.array([[float(channel.mean()), float(channel.std())] for channel in site], dtype=np.float64)


class SiteStore:
    """A complete store (see the module docstring): ``store.read(row)`` is the site of index row ``row``.

    Attributes:
        folder: the store's folder.
        index: one row per site: row, site_id, image_stem, experiment, plate.
        shape: ``(N, 6, H, W)``.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        done = self.folder / "complete.json"
        if not done.is_file():
            raise FileNotFoundError(f"{self.folder}: not a complete site store (no complete.json); "
                                    "run rxlib.data.store.prepare_store")
        record = json.loads(done.read_text())
        if record.get("version") != STORE_VERSION:
            raise ValueError(f"{done}: store version {record.get('version')}, expected {STORE_VERSION}; delete it")
        self.shape: tuple[int, int, int, int] = tuple(record["shape"])
        self.index = pd.read_csv(self.folder / "index.csv", dtype={"site_id": str, "image_stem": str,
                                                                   "experiment": str})
        self.path = self.folder / "sites.u8"
        size = self.path.stat().st_size
        if len(self.index) != self.shape[0] or size != int(np.prod(self.shape)):
            raise ValueError(f"{self.path}: {size} bytes and {len(self.index)} index rows do not match shape "
                             f"{self.shape}; delete {self.folder} to rebuild")
        self._row_of = {stem: i for i, stem in enumerate(self.index["image_stem"])}
        self._site_bytes = int(np.prod(self.shape[1:]))
        self._fd: int | None = None
        self._fd_pid: int | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = state["_fd_pid"] = None  # DataLoader workers open their own descriptor
        return state

    def _descriptor(self) -> int:
        if self._fd is None or self._fd_pid != os.getpid():  # one descriptor per process (forked workers too)
            self._fd, self._fd_pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __del__(self, _getpid=os.getpid, _close=os.close):  # bound now: at interpreter exit os may be gone
        if getattr(self, "_fd", None) is not None and self._fd_pid == _getpid():
            try:
                _close(self._fd)
            except OSError:
                pass

    def rows(self, stems: Sequence[str]) -> np.ndarray:
        """Store rows of the sites ``stems``.

        Raises:
            KeyError: a stem the store does not hold (names it).
        """
        try:
            return np.array([self._row_of[s] for s in stems], dtype=np.int64)
        except KeyError as exc:
            raise KeyError(f"site {exc.args[0]!r} is not in the store {self.folder}") from None

    def read(self, row: int) -> np.ndarray:
        """The site of store row ``row`` as a fresh uint8 array (6, H, W) (``os.pread``, see the module)."""
        row = int(row)
        if not 0 <= row < self.shape[0]:
            raise IndexError(f"row {row} out of range 0..{self.shape[0] - 1} of {self.path}")
        data = os.pread(self._descriptor(), self._site_bytes, row * self._site_bytes)
        if len(data) != self._site_bytes:
            raise OSError(f"{self.path}: short read of row {row} ({len(data)} of {self._site_bytes} bytes)")
        return np.frombuffer(bytearray(data), dtype=np.uint8).reshape(self.shape[1:])

    def read_many(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Sites of ``rows`` as one uint8 array (len(rows), 6, H, W), read one by one into it."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        for i, row in enumerate(rows):
            out[i] = self.read(row)
        return out

    def intensities(self, rows: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
        """Per-image channel mean and std of ``rows`` (default all), in the long form of
        :func:`rxlib.data.stats.image_intensities` (site_id, experiment, plate, channel, mean, std)."""
        values = np.load(self.folder / "intensities.npy", mmap_mode="r")
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        part = np.asarray(values[rows])                                  # (n, 6, 2)
        meta = self.index.iloc[rows]
        return pd.DataFrame({
            "site_id": np.repeat(meta["site_id"].to_numpy(), N_CHANNELS),
            "experiment": np.repeat(meta["experiment"].to_numpy(), N_CHANNELS),
            "plate": np.repeat(meta["plate"].to_numpy(), N_CHANNELS),
            "channel": np.tile(np.arange(1, N_CHANNELS + 1), len(rows)),
            "mean": part[:, :, 0].reshape(-1), "std": part[:, :, 1].reshape(-1)})

    def stats(self, by: str = "experiment", rows: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
        """Per-``by`` (experiment or plate) channel mean and std of the sites of ``rows`` (default all),
        by :func:`rxlib.data.stats.normalisation_stats`."""
        from .stats import normalisation_stats

        if rows is None and (self.folder / f"stats_{by}.csv").is_file():
            frame = pd.read_csv(self.folder / f"stats_{by}.csv", dtype={"group": str})
            frame.attrs["by"] = by
            return frame
        return normalisation_stats(self.intensities(rows), by)


def prepare_store(root: str | os.PathLike, table: pd.DataFrame, *, workers: int | None = None,
                  folder: str | os.PathLike | None = None, expected_size: int | None = None,
                  progress: bool = True, chunk_sites: int = CHUNK_SITES) -> SiteStore:
    """Open the store of the sites of ``table`` under ``root``, decoding (or finishing) it first if needed.

    Args:
        root: data root.
        table: normalised metadata rows (:func:`rxlib.data.read_metadata`): ``site_id``,
            ``image_stem``, ``experiment``, ``plate``; one store row per table row, in order.
        workers: decoding processes (default: the machine's cores, at most one per chunk); 1 decodes
            in this process.
        folder: parent folder of the stores (default :func:`stores_dir`).
        expected_size: side length every image must have (None: all equal to the first site's).
        progress: a tqdm progress bar.
        chunk_sites: sites per chunk (the unit of resuming).

    Raises:
        MissingImageError, CorruptImageError, ImageShapeError: a bad image (names the file); the
            store stays incomplete (finished chunks are kept for the next call).
        ValueError: no sites, or a duplicated image stem.
    """
    root = Path(root).resolve()
    missing = [c for c in _INDEX_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table has no column(s) {missing}; pass rows of rxlib.data.read_metadata({str(root)!r})")
    if len(table) == 0:
        raise ValueError(f"no sites to store under {root}")
    stems = table["image_stem"].astype(str).tolist()
    if len(set(stems)) != len(stems):
        dup = pd.Series(stems)[pd.Series(stems).duplicated()].iloc[0]
        raise ValueError(f"image stem {dup!r} appears twice in the table; a store holds each site once")
    parent = Path(folder) if folder is not None else stores_dir()
    target = parent / store_key(root, stems, expected_size)
    if (target / "complete.json").is_file():
        return SiteStore(target)
    target.mkdir(parents=True, exist_ok=True)
    with _exclusive(target / ".lock"):
        if not (target / "complete.json").is_file():  # another process may have finished it meanwhile
            _build(root, table.reset_index(drop=True), stems, target, workers, expected_size, progress, chunk_sites)
    return SiteStore(target)


def _build(root: Path, table: pd.DataFrame, stems: list[str], target: Path, workers: int | None,
           expected_size: int | None, progress: bool, chunk_sites: int) -> None:
    """Decode the chunks not yet recorded into ``sites.u8``, then write the intensities, index,
    statistics and, last, ``complete.json``; the chunk records are removed once it exists."""
    n = len(stems)
    first = load_site_stem(root, stems[0], expected_size)
    shape = (n, *first.shape)
    data = _sparse_data_file(target, int(np.prod(shape)))
    chunks_dir = target / "chunks"
    chunks_dir.mkdir(exist_ok=True)
    bounds = _chunk_bounds(n, chunk_sites)
    todo = [b for b in bounds if not (chunks_dir / f"{b[0]}.npy").is_file()]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, initial=n - sum(b[2] - b[1] for b in todo), desc="store sites", unit="site")
    try:
        _decode_chunks(root, stems, data, (first.shape[1], first.shape[2]), todo, chunks_dir, workers, bar)
    finally:
        if bar is not None:
            bar.close()
    values = np.concatenate([np.load(chunks_dir / f"{k}.npy") for k, _, _ in bounds])
    _write_summaries(root, table, target, values, shape)
    shutil.rmtree(chunks_dir, ignore_errors=True)


def _sparse_data_file(target: Path, nbytes: int) -> Path:
    """``target/sites.u8`` of ``nbytes``: kept if it has that size, else created empty (and sparse)."""
    data = target / "sites.u8"
    if not data.is_file() or data.stat().st_size != nbytes:
        # a data file of another size cannot hold resumable chunks of this layout: start again
        shutil.rmtree(target / "chunks", ignore_errors=True)
        with open(data, "wb") as handle:
            handle.truncate(nbytes)  # sparse: blocks are allocated as chunks are written
    return data


def _chunk_bounds(n: int, chunk_sites: int) -> list[tuple[str, int, int]]:
    """(record name, first row, stop row) of each chunk of ``chunk_sites`` rows."""
    # a record names its rows, so a resume with another chunk size never takes one chunk for another
    return [(f"{start:09d}-{min(start + chunk_sites, n):09d}", start, min(start + chunk_sites, n))
            for start in range(0, n, chunk_sites)]


def _decode_chunks(root: Path, stems: list[str], data: Path, size: tuple[int, int],
                   todo: list[tuple[str, int, int]], chunks_dir: Path, workers: int | None, bar: Any) -> None:
    """Decode the chunks of ``todo`` into ``data`` (in ``workers`` processes), recording each as it
    ends and advancing ``bar`` (a tqdm bar, or None)."""

    def finish(k: str, start: int, stop: int, values: np.ndarray) -> None:
        with atomic_path(chunks_dir / f"{k}.npy") as tmp:  # the chunk's pixels are on disk: record it
            with open(tmp, "wb") as handle:
                np.save(handle, values)
        if bar is not None:
            bar.update(stop - start)

    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    if workers == 1:
        for k, start, stop in todo:
            finish(k, start, stop, _decode_chunk(str(root), stems[start:stop], str(data), start, size))
        return
    import multiprocessing

    # fork: workers inherit the imported modules instead of importing torch again (spawn)
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = {pool.submit(_decode_chunk, str(root), stems[start:stop], str(data), start, size):
                   (k, start, stop) for k, start, stop in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    k, start, stop = pending.pop(future)
                    finish(k, start, stop, future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _write_summaries(root: Path, table: pd.DataFrame, target: Path, values: np.ndarray, shape: tuple) -> None:
    """Write the intensities, the index, the pooled statistics and, last, ``complete.json``."""
    with atomic_path(target / "intensities.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, values)
    index = table[_INDEX_COLUMNS].copy()
    index.insert(0, "row", np.arange(len(values)))
    with atomic_path(target / "index.csv") as tmp:
        index.to_csv(tmp, index=False)
    store_stats = _pooled(index, values)
    for by, frame in store_stats.items():
        with atomic_path(target / f"stats_{by}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    with atomic_path(target / "complete.json") as tmp:  # last: marks the store complete
        tmp.write_text(json.dumps({"version": STORE_VERSION, "shape": list(shape), "dtype": "uint8",
                                   "root": str(root), "sites": shape[0]}, indent=2) + "\n")


def _pooled(index: pd.DataFrame, values: np.ndarray) -> dict[str, pd.DataFrame]:
    from .stats import normalisation_stats

    long = pd.DataFrame({
        "experiment": np.repeat(index["experiment"].to_numpy(), N_CHANNELS),
        "plate": np.repeat(index["plate"].to_numpy(), N_CHANNELS),
        "channel": np.tile(np.arange(1, N_CHANNELS + 1), len(index)),
        "mean": values[:, :, 0].reshape(-1), "std": values[:, :, 1].reshape(-1)})
    return {by: normalisation_stats(long, by) for by in ("experiment", "plate")}


def _decode_chunk(root: str, stems: list[str], data: str, start: int, size: tuple[int, int]) -> np.ndarray:
    """Decode ``stems`` into rows ``start...`` of ``data``; flush; return their (n, 6, 2) intensities."""
    values = np.empty((len(stems), N_CHANNELS, 2), dtype=np.float64)
    fd = os.open(data, os.O_WRONLY)
    try:
        for i, stem in enumerate(stems):
            site = load_site_stem(root, stem, size)
            values[i] = site_intensities(site)
            buffer = np.ascontiguousarray(site).tobytes()
            written = os.pwrite(fd, buffer, (start + i) * len(buffer))
            if written != len(buffer):
                raise OSError(f"{data}: short write of row {start + i} ({written} of {len(buffer)} bytes)")
        os.fdatasync(fd)  # the pixels reach the disk before the chunk is recorded as done
    finally:
        os.close(fd)
    return values


@contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive ``flock`` on ``lock_path`` (waits for another process preparing the store)."""
    import fcntl

    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clear_stores(folder: str | os.PathLike | None = None) -> None:
    """Delete every store (the folder :func:`stores_dir` by default)."""
    folder = Path(folder) if folder is not None else stores_dir()
    if folder.is_dir():
        shutil.rmtree(folder)


def main(argv: list[str] | None = None) -> int:
    """``python -m rxlib.data.store DATA_ROOT [--workers N]``: prepare the store of every site of a data
    root (the one :func:`rxlib.data.splits.held_out_split` reads) and print its folder."""
    import argparse

    from .metadata import read_metadata

    parser = argparse.ArgumentParser(description="Decode the sites of a data root once into the site store.")
    parser.add_argument("data_root")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    args = parser.parse_args(argv)
    store = prepare_store(args.data_root, read_metadata(args.data_root), workers=args.workers)
    print(f"{store.folder}: {store.shape[0]} sites of {store.shape[1]}x{store.shape[2]}x{store.shape[3]}")
    return 0


__all__ = ["SiteStore", "prepare_store", "store_key", "site_intensities", "stores_dir", "clear_stores",
           "CHUNK_SITES"]


if __name__ == "__main__":
    raise SystemExit(main())
