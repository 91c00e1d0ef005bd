"""Helpers of the kill-and-restart tests: launch a command in its own process group, kill it with
SIGKILL once a condition holds, compare folders."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def child_env(tmp_path: Path, **extra: str) -> dict:
    return {**os.environ, "RXLIB_TRAIN_THREADS": "1", "OMP_NUM_THREADS": "1", "RXLIB_CACHE": str(tmp_path / "cache"),
            "PYTHONUNBUFFERED": "1", **extra}


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """``python ARGS`` in a new session (so that it and its children can be killed together)."""
    fh = open(log, "ab")
    return subprocess.Popen([sys.executable, *args], env=env, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _descendants(pid: int) -> list[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_when(proc: subprocess.Popen, ready, delay_s: float, timeout_s: float = 120.0) -> bool:
    """Wait until ``ready()`` is true, ``delay_s`` more, then SIGKILL the process and everything it
    started (a papermill kernel, a worker pool). Returns False if it finished before being killed."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            raise TimeoutError("the kill point was never reached")
        time.sleep(0.01)
    time.sleep(delay_s)
    if proc.poll() is not None:
        return False
    victims = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)  # the process group we started (start_new_session=True)
    for pid in victims:  # children that started a session of their own
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    return True


def folder_digest(root: Path, ignore=lambda p: False) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not ignore(p)}
