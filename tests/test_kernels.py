"""The kernel a notebook helper keeps between notebooks (rxlib.kernels): reused, and fresh to each notebook."""
from __future__ import annotations

import pytest

from rxlib import kernels


def _run(code: str, store_history: bool = False, cwd=".") -> tuple[str, str]:
    """Execute ``code`` in the kept kernel; its stdout and stderr text, and the error name if it failed."""
    from jupyter_client.blocking import BlockingKernelClient

    manager = kernels.kept("python3", cwd)
    client = BlockingKernelClient(**manager.get_connection_info(session=True), parent=manager)
    client.start_channels()
    out, err = [], []

    def hook(msg):
        if msg["msg_type"] == "stream":
            (out if msg["content"]["name"] == "stdout" else err).append(msg["content"]["text"])

    try:
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive(code, timeout=60, output_hook=hook, store_history=store_history)
    finally:
        client.stop_channels()
    return "".join(out), "".join(err) + reply["content"].get("ename", "")


@pytest.fixture
def kept_kernel():
    kernels.discard()
    yield
    kernels.discard()


def test_warnings_show_again_and_a_notebook_s_own_filters_go(kept_kernel, tmp_path):
    (tmp_path / "warner.py").write_text("import warnings\n\ndef warn():\n    warnings.warn('from a module')\n")
    _, err = _run(f"import sys; sys.path.insert(0, {str(tmp_path)!r})\nimport warner\nwarner.warn()")
    assert "from a module" in err
    _, err = _run("import warner\nwarner.warn()")
    assert "from a module" not in err  # once per location within a notebook, as usual
    kernels.reset()
    _, err = _run("import warner\nwarner.warn()\nimport warnings\nwarnings.simplefilter('ignore')")
    assert "from a module" in err  # the next notebook sees it again
    kernels.reset()
    _, err = _run("import warner\nwarner.warn()")
    assert "from a module" in err  # the previous notebook's simplefilter('ignore') is gone


def test_the_kernel_is_kept_and_looks_fresh_to_the_next_notebook(kept_kernel, tmp_path):
    pid, _ = _run("import os, torch, matplotlib.pyplot as plt\n"
                  "x = 1; torch.manual_seed(5); torch.rand(10); plt.figure()\nprint(os.getpid())")
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
    kernels.reset()
    count, _ = _run("print(get_ipython().execution_count)", store_history=True)
    assert count.strip() == "1"  # cells numbered from 1 again


def test_another_working_directory_or_a_failed_reset_starts_a_fresh_kernel(kept_kernel, tmp_path, monkeypatch):
    first, _ = _run("import os; print(os.getpid())")
    moved, _ = _run("import os; print(os.getpid()); print(os.getcwd())", cwd=tmp_path)
    assert moved.split()[0] != first.strip() and moved.split()[1] == str(tmp_path)  # a kernel started there
    assert kernels._kept[2].is_alive()
    monkeypatch.setattr(kernels, "_RESET", "raise RuntimeError('cannot reset')")
    kernels.reset()
    assert kernels._kept is None  # a kernel that cannot be reset is not reused
    again, _ = _run("import os; print(os.getpid())", cwd=tmp_path)
    assert again.strip() != moved.split()[0]
