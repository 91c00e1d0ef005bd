"""Long-lived helper interpreters that take one job after another: the training pool and the notebook
runner hand their jobs to them instead of starting ``python`` once per job.

Why: a fresh interpreter per job paid its imports (torch, pandas, papermill, nbconvert: 3-5 s of CPU)
for every model and every notebook; a smoke run with three seeds trains 31 models and runs 20
notebooks. A helper pays them once and is then reused by the same pool thread.

The protocol is lines of text: the parent writes one JSON job per line to the helper's stdin; the
helper (:func:`serve`, run as ``python -m MODULE --serve``) answers every job with any number of lines
of its own (progress, which the parent passes to a callback) and then exactly one line that starts
with :data:`RESULT` and holds a JSON object. Whatever else a job prints to stdout, a kernel or a
library, is passed to the callback too and never taken for a result. The helper's stderr goes to a
temporary file; if the helper dies, :class:`HelperDied` gives its last line.

A job that fails with an error the handler knows comes back as a result (``{"error": "..."}``); the
helper stays usable. Any other exception is printed to stderr with its traceback and comes back the
same way, so one bad job never leaves a helper half-way through another.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: Prefix of the one line with which a helper answers a job.
RESULT = "rxlib-helper-result: "


class HelperDied(RuntimeError):
    """A helper process ended while working on a job; the message gives its last line on stderr."""


class Helper:
    """One ``python -m MODULE --serve`` process (started on the first :meth:`run`)."""

    def __init__(self, module: str) -> None:
        self.module = module
        self._process: subprocess.Popen | None = None
        self._stderr = None

    def _start(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._stderr = tempfile.TemporaryFile(mode="w+")
            self._process = subprocess.Popen([sys.executable, "-m", self.module, "--serve"], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1)
        return self._process

    def run(self, job: dict, on_line: Callable[[str], None] | None = None) -> dict:
        """Send ``job``, pass every other line to ``on_line``, return the result object.

        Raises:
            HelperDied: the helper ended before it answered (its last line on stderr in the message).
        """
        process = self._start()
        try:
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died before reading; the read below finds its end and reports it
        for line in process.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
            if on_line is not None:
                on_line(line.rstrip("\n"))
        process.wait()
        raise HelperDied(f"{self.module} helper ended (exit status {process.returncode}): {self._last_error_line()}")

    def _last_error_line(self) -> str:
        self._stderr.seek(0)
        lines = [line for line in self._stderr.read().splitlines() if line.strip()]
        return lines[-1] if lines else "no message"

    def close(self) -> None:
        """End the helper (it finishes the job it has, then sees its input close)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.stdin.close()
                try:
                    self._process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._stderr.close()
            self._process = None


class HelperPool:
    """Helpers for the threads of a pool: :meth:`borrow` lends an idle one (starting one if none is
    idle), so that each thread reuses a helper and there are never more helpers than threads."""

    def __init__(self, module: str) -> None:
        self.module = module
        self._idle: list[Helper] = []
        self._all: list[Helper] = []
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[Helper]:
        with self._lock:
            helper = self._idle.pop() if self._idle else None
            if helper is None:
                helper = Helper(self.module)
                self._all.append(helper)
        try:
            yield helper
        finally:
            with self._lock:
                self._idle.append(helper)

    def close(self) -> None:
        with self._lock:
            for helper in self._all:
                helper.close()
            self._all, self._idle = [], []

    def __enter__(self) -> HelperPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(handle: Callable[[dict], dict], known_errors: tuple[type[BaseException], ...] = ()) -> int:
    """The helper's side: for each JSON line on stdin, ``handle(job)`` and print its result line.

    An exception in ``known_errors`` comes back as ``{"error": str(exc)}``; any other also comes back as
    ``{"error": "TypeName: message"}``, with its traceback on stderr. Returns 0 when stdin closes.
    """
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = handle(json.loads(line))
        except known_errors as exc:
            result = {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the job
            traceback.print_exc(file=sys.stderr)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stderr.flush()
        print(RESULT + json.dumps(result), flush=True)
    return 0
