"""Long-lived helper interpreters that take one job after another: the training pool and the notebook
runner hand their jobs to them instead of starting ``python`` once per job.

Why: a fresh interpreter per job paid its imports (torch, pandas, papermill, nbconvert: 3-5 s of CPU)
for every model and every notebook; a smoke run with three seeds trains 31 models and runs 20
notebooks. A helper pays them once and is then reused by the same pool thread.

The protocol is lines of text: the parent writes one JSON job per line to the helper's stdin, with a
job number; the helper (:func:`serve`, run as ``python -m MODULE --serve``) answers every job with any
number of lines of its own (progress, which the parent passes to a callback) and then one line, on a
line of its own, that starts with :data:`RESULT` and holds a JSON object carrying that job number.
Whatever else a job prints to stdout, a kernel or a library, even a line that starts with the prefix,
is passed to the callback and never taken for the result. The helper's stderr goes to a temporary file;
if the helper dies, :class:`HelperDied` gives the last line it wrote during that job. If anything goes
wrong in the parent while a job runs (the callback raises, Ctrl-C), the helper is killed, so that it is
never lent out again half-way through a job.

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
        self._jobs = 0

    def _start(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            if self._stderr is not None:
                self._stderr.close()
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
        self._jobs += 1
        number = self._jobs
        self._stderr.seek(0, 2)
        errors_from = self._stderr.tell()  # what this job writes to stderr, not an earlier one
        try:
            try:
                process.stdin.write(json.dumps({"job": number, "task": job}) + "\n")
                process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # it died before reading; the read below finds its end and reports it
            for line in process.stdout:
                result = _result_of(line, number)
                if result is not None:
                    return result
                if on_line is not None and line.strip():
                    on_line(line.rstrip("\n"))
            process.wait()
        except BaseException:
            self.kill()  # half-way through a job: never lent out again
            raise
        raise HelperDied(f"{self.module} helper ended (exit status {process.returncode}): "
                         f"{self._error_line(errors_from)}")

    def _error_line(self, start: int) -> str:
        self._stderr.seek(start)
        lines = [line for line in self._stderr.read().splitlines() if line.strip()]
        return lines[-1] if lines else "no message (killed?)"

    def kill(self) -> None:
        """End the helper at once, whatever it is doing."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None

    def close(self) -> None:
        """End the helper: it finishes the job it has, then sees its input close (killed after 30 s)."""
        if self._process is not None and self._process.poll() is None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass  # kill() below ends it
        self.kill()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _result_of(line: str, number: int) -> dict | None:
    """The result in ``line`` if it is job ``number``'s result line, else None (an ordinary line)."""
    if not line.startswith(RESULT):
        return None
    try:
        answer = json.loads(line[len(RESULT):])
    except ValueError:
        return None
    if not isinstance(answer, dict) or answer.get("job") != number or not isinstance(answer.get("result"), dict):
        return None
    return answer["result"]


class HelperPool:
    """Helpers for the threads of a pool: :meth:`borrow` lends an idle one (starting one if none is
    idle), so that each thread reuses a helper and there are never more helpers than threads.

    ``reuse=False`` ends each helper after its job (one interpreter per job, e.g. so that a GPU's memory is
    returned after each model). :meth:`kill` ends them all at once and lends no more (after Ctrl-C)."""

    def __init__(self, module: str, reuse: bool = True) -> None:
        self.module = module
        self.reuse = reuse
        self._idle: list[Helper] = []
        self._all: list[Helper] = []
        self._lock = threading.Lock()
        self._killed = False

    @contextmanager
    def borrow(self) -> Iterator[Helper]:
        with self._lock:
            if self._killed:
                raise HelperDied(f"{self.module} helpers were stopped")
            helper = self._idle.pop() if self._idle else None
            if helper is None:
                helper = Helper(self.module)
                self._all.append(helper)
        try:
            yield helper
        finally:
            if not self.reuse:
                helper.close()
            with self._lock:
                self._idle.append(helper)

    def kill(self) -> None:
        """End every helper at once and lend none from now on."""
        with self._lock:
            self._killed = True
            helpers = list(self._all)
        for helper in helpers:
            helper.kill()

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
        message = json.loads(line)
        try:
            result = handle(message["task"])
        except known_errors as exc:
            result = {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the job
            traceback.print_exc(file=sys.stderr)
            result = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stderr.flush()
        # on a line of its own, even after a job's output that did not end its line
        print("\n" + RESULT + json.dumps({"job": message["job"], "result": result}), flush=True)
    return 0
