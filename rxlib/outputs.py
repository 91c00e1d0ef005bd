"""Output folders that rxlib writes: one writer at a time, and a record of every file written.

Every command that writes a folder (``rxlib synth`` today; ``rxlib reproduce`` can use the same)
claims it first::

    with claim_output_folder(out, "rxlib synth") as folder:
        folder.refuse_foreign()            # files rxlib did not write: refuse, naming them
        # (or, for a folder shared with other files: folder.refuse_unrecorded(["metadata.csv", ...]))
        folder.record("metadata.csv")      # before writing a file: note it in the record
        write_csv(out / "metadata.csv", table)
        folder.finalise()                  # the record sorted, so that it is the same bytes every run

- **One writer per folder.** ``claim_output_folder`` takes ``filelock.FileLock(record + ".lock",
  timeout=0)``: a second writer gets :class:`OutputFolderBusy` at once, naming the folder.
- **A record of what was written.** ``.rxlib-written.txt`` in the folder lists, one per line, every
  path (relative, POSIX) that rxlib wrote there. A path is recorded *before* its file is written, by
  appending one line (a single ``write`` to a file opened with ``O_APPEND``, so worker processes can
  record too), and :meth:`OutputFolder.finalise` rewrites the record sorted and atomically. Whatever
  rxlib left on disk is therefore always listed, and ``--overwrite`` removes only the listed files
  (:meth:`OutputFolder.remove_written`), their temporary ``.{name}.*.part`` siblings, and folders
  left empty by that.
- **Nothing foreign.** :meth:`OutputFolder.foreign` lists every file or folder that is neither
  recorded, nor a folder holding recorded files, nor the record and its lock.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .io import DiskFullError, OutputFolderError, atomic_path, disk_full_error, is_disk_full

RECORD_NAME = ".rxlib-written.txt"
LOCK_SUFFIX = ".lock"
_HEADER = "# files written here by rxlib, one per line; --overwrite removes only these\n"

__all__ = ["RECORD_NAME", "ForeignFilesError", "OutputFolder", "OutputFolderBusy", "OutputFolderError",
           "DiskFullError", "claim_output_folder", "record_written", "read_record"]


class OutputFolderBusy(OutputFolderError):
    """Another process holds the folder's lock (it is writing there now)."""


class ForeignFilesError(OutputFolderError):
    """The folder holds files or folders that rxlib did not write."""


def _relative(folder: Path, path: str | os.PathLike) -> str:
    path = Path(path)
    rel = path.relative_to(folder) if path.is_absolute() else path
    text = rel.as_posix()
    if not text or text.startswith("../") or "\n" in text or text == RECORD_NAME:
        raise ValueError(f"{path}: not a path inside the output folder {folder}")
    return text


def record_written(folder: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> None:
    """Append ``paths`` (absolute inside ``folder``, or relative to it) to the folder's record.

    Call it *before* writing the files. Safe from several processes at once: each call is one
    ``write`` to a file opened with ``O_APPEND``.
    """
    folder = Path(folder)
    lines = "".join(_relative(folder, p) + "\n" for p in paths)
    if not lines:
        return
    record = folder / RECORD_NAME
    try:
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            if os.fstat(fd).st_size == 0:
                lines = _HEADER + lines
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(record, exc) from exc
        raise


def read_record(folder: str | os.PathLike) -> set[str]:
    """The relative paths recorded in ``folder`` (empty if it has no record).

    A last line cut short by a crash names a file that was never written (paths are recorded before
    their file), so it is ignored.
    """
    record = Path(folder) / RECORD_NAME
    if not record.is_file():
        return set()
    text = record.read_text(errors="replace")
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # torn last line
    return {line for line in lines if line and not line.startswith("#")}


class OutputFolder:
    """A claimed output folder (see the module docstring); made by :func:`claim_output_folder`."""

    def __init__(self, path: str | os.PathLike, tool: str = "rxlib"):
        self.path = Path(path)
        self.tool = tool
        self._lock = None

    # -- the lock -------------------------------------------------------------------------
    @property
    def record_path(self) -> Path:
        return self.path / RECORD_NAME

    @property
    def lock_path(self) -> Path:
        return self.path / (RECORD_NAME + LOCK_SUFFIX)

    def acquire(self) -> "OutputFolder":
        """Create the folder if needed and take its lock, or raise :class:`OutputFolderBusy`."""
        from filelock import FileLock, Timeout

        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(self.path / ".", exc) from exc
            raise OutputFolderError(f"cannot create output folder {self.path}: {exc.strerror or exc}") from exc
        if not self.path.is_dir():
            raise OutputFolderError(f"{self.path}: exists and is not a folder")
        lock = FileLock(str(self.lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout as exc:
            raise OutputFolderBusy(
                f"{self.path} is being written by another process (lock {self.lock_path.name} held); "
                f"wait for it to finish or choose another folder") from exc
        self._lock = lock
        self._repair_record()
        return self

    def _repair_record(self) -> None:
        """Drop a last line cut short by a killed writer, so that later appends start on a new line."""
        record = self.record_path
        if record.is_file() and record.stat().st_size and not record.read_bytes().endswith(b"\n"):
            keep = record.read_bytes().rpartition(b"\n")[0]
            with atomic_path(record) as tmp:
                tmp.write_bytes(keep + b"\n" if keep else b"")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "OutputFolder":
        return self if self._lock is not None else self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    # -- the record -----------------------------------------------------------------------
    def written(self) -> set[str]:
        """Relative paths rxlib recorded in this folder."""
        return read_record(self.path)

    def record(self, *paths: str | os.PathLike) -> None:
        """Note ``paths`` as written by rxlib (call before writing them)."""
        record_written(self.path, paths)

    def finalise(self) -> None:
        """Rewrite the record sorted and without duplicates (the same bytes for the same files)."""
        written = self.written()
        if not written:
            return
        text = _HEADER + "".join(f"{p}\n" for p in sorted(written))
        if self.record_path.is_file() and self.record_path.read_text(errors="replace") == text:
            return
        with atomic_path(self.record_path) as tmp:
            tmp.write_text(text)

    def _is_partial_of(self, rel: str, written: set[str]) -> bool:
        """``rel`` is a temporary ``.{name}.XXXX.part`` file of a recorded ``name`` (rxlib.io's pattern)."""
        folder, _, name = rel.rpartition("/")
        if not (name.startswith(".") and name.endswith(".part")):
            return False
        stem = name[1:-len(".part")]
        target, sep, _ = stem.rpartition(".")
        return bool(sep) and (f"{folder}/{target}" if folder else target) in written

    def foreign(self, limit: int | None = None, also_ours=None) -> list[str]:
        """Files and folders under the folder that rxlib did not write (relative paths, sorted).

        Args:
            limit: stop after this many.
            also_ours: optional predicate on a relative file path that counts it as rxlib's
                (used to adopt folders written before the record existed).
        """
        if not self.path.is_dir():
            return []
        written = self.written()
        parents = {str(Path(p).parent.as_posix()) for p in written}
        folders = set()
        for p in parents:
            while p not in ("", "."):
                folders.add(p)
                p = p.rpartition("/")[0]
        ours = {RECORD_NAME, RECORD_NAME + LOCK_SUFFIX}
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames.sort()
            base = Path(dirpath).relative_to(self.path).as_posix()
            prefix = "" if base == "." else base + "/"
            if prefix and prefix[:-1] not in folders and not dirnames and not filenames:
                found.append(prefix)  # an empty folder rxlib did not make
            for f in sorted(filenames):
                rel = prefix + f
                if rel in ours or rel in written or self._is_partial_of(rel, written):
                    continue
                if also_ours is not None and also_ours(rel):
                    continue
                found.append(rel)
            if limit is not None and len(found) >= limit:
                break
        return sorted(found)[:limit] if limit is not None else sorted(found)

    def refuse_foreign(self, hint: str = "", also_ours=None) -> None:
        """Raise :class:`ForeignFilesError` naming the folder and the first foreign entries, if any."""
        found = self.foreign(limit=6, also_ours=also_ours)
        if found:
            shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
            raise ForeignFilesError(
                f"{self.path} holds files {self.tool} did not write ({shown}); refusing to write there "
                f"(nothing was changed){hint}; choose an empty or new folder")

    def refuse_unrecorded(self, targets: Iterable[str | os.PathLike]) -> None:
        """Raise :class:`ForeignFilesError` if any of ``targets`` (paths about to be written) exists
        without being recorded: a folder shared with other files is fine, a user's file of the same
        name is never overwritten."""
        written = self.written()
        clash = [rel for rel in (_relative(self.path, t) for t in targets)
                 if (self.path / rel).exists() and rel not in written]
        if clash:
            raise ForeignFilesError(
                f"{self.path} holds {', '.join(clash[:5])}{', ...' if len(clash) > 5 else ''}, which {self.tool} "
                f"did not write; refusing to overwrite (nothing was changed); choose another output folder")

    def remove_partial(self) -> list[str]:
        """Delete temporary ``.*.part`` files of recorded paths (left by a killed run); others stay."""
        written = self.written()
        removed = []
        for folder in sorted({str(Path(p).parent) for p in written}):
            directory = self.path / folder
            if not directory.is_dir():
                continue
            for stray in directory.glob(".*.part"):
                rel = stray.relative_to(self.path).as_posix()
                if self._is_partial_of(rel, written):
                    stray.unlink(missing_ok=True)
                    removed.append(rel)
        return removed

    def remove_written(self) -> list[str]:
        """Delete every recorded file (and its ``.part`` siblings), then folders left empty; clear the record."""
        written = self.written()
        self.remove_partial()
        for rel in sorted(written):
            target = self.path / rel
            if target.is_file() or target.is_symlink():
                target.unlink()
        for folder in sorted({str(Path(p).parent) for p in written}, key=lambda p: -p.count("/")):
            directory = self.path / folder
            while directory != self.path and directory.is_dir():
                try:
                    directory.rmdir()  # only if empty: a folder holding anything else stays
                except OSError:
                    break
                directory = directory.parent
        self.record_path.unlink(missing_ok=True)
        return sorted(written)


def claim_output_folder(path: str | os.PathLike, tool: str = "rxlib") -> OutputFolder:
    """Create ``path`` if needed and lock it for this process (use as a context manager).

    Raises:
        OutputFolderBusy: another process holds the lock.
        OutputFolderError: ``path`` cannot be created, or is a file.
    """
    return OutputFolder(path, tool).acquire()
