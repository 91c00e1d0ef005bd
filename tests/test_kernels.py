"""The kernel a notebook helper keeps between notebooks (rxlib.kernels): reused, and fresh to each notebook."""
from __future__ import annotations

import pytest

from rxlib import kernels


def _run(code: str) -> tuple[str, str]:
    """Execute ``code`` in the kept kernel; its stdout and stderr text, and the error name if it failed."""
    manager = kernels.kept("python3", ".")
    client = manager.client()
    client.start_channels()
    out, err = [], []

    def hook(msg):
        if msg["msg_type"] == "stream":
            (out if msg["content"]["name"] == "stdout" else err).append(msg["content"]["text"])

    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive(code, timeout=60, output_hook=hook)
    finally:
        client.stop_channels()
    return "".join(out), "".join(err) + reply["content"].get("ename", "")


@pytest.fixture
def kept_kernel():
    kernels.discard()
    yield
    kernels.discard()


def test_the_kernel_is_kept_and_looks_fresh_to_the_next_notebook(kept_kernel, tmp_path):
    pid, _ = _run("import os, warnings, torch, matplotlib.pyplot as plt\n"
                  "x = 1; torch.manual_seed(5); torch.rand(10); plt.figure()\n"
                  "warnings.warn('shown once per location')\nprint(os.getpid())")
    manager = kernels.kept("python3", ".")
    kernels.reset()
    assert kernels.kept("python3", ".") is manager  # the same kernel ...
    again, err = _run("import os, torch, matplotlib.pyplot as plt\n"
                      "print(os.getpid()); print(torch.initial_seed()); print(plt.get_fignums())")
    lines = again.splitlines()
    assert lines[0] == pid.strip()  # ... the same process
    assert lines[1] != "5"  # torch's global generator seeded again from entropy, as in a fresh kernel
    assert lines[2] == "[]"  # no figure left over
    _, err = _run("x")
    assert "NameError" in err  # the previous notebook's names are gone
    _, err = _run("import warnings\nwarnings.warn('shown once per location')")
    assert "shown once per location" in err  # warnings are shown again


def test_another_working_directory_or_a_failed_reset_starts_a_fresh_kernel(kept_kernel, tmp_path, monkeypatch):
    first, _ = _run("import os; print(os.getpid())")
    other = kernels.kept("python3", tmp_path)
    assert other.is_alive()
    monkeypatch.setattr(kernels, "_RESET", "raise RuntimeError('cannot reset')")
    kernels.reset()
    assert kernels._kept is None  # a kernel that cannot be reset is not reused
    second, _ = _run("import os; print(os.getpid())")
    assert second != first
