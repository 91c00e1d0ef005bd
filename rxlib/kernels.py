"""The Jupyter kernel a notebook helper keeps between notebooks, so that a CPU run pays a kernel's start and
imports once per helper instead of once per notebook.

Why: a fresh kernel spends about 5 s of CPU before a notebook's first result (about 1.5 s to start, about
3.5 s importing torch, torchvision, pandas, scipy, matplotlib and rxlib), and a smoke run with three seeds
executes 20 notebooks on 2 cores. Measured on this project's 2-core machine: the six verdict notebooks of
one extra seed took 62.7 s in fresh kernels and 32.1 s one after another in one kept kernel, and every
table, verdict sample and figure they wrote was byte-identical.

Between two notebooks :func:`reset` makes the kernel look fresh to the next one: its figures closed, the user
namespace emptied (``%reset -f``: a name a notebook forgot to define fails as in a fresh kernel), its cells
numbered from 1 again, the global random generators of Python, numpy and torch seeded again from OS entropy (as a
fresh kernel seeds them: nothing can rely on their state, and a notebook that seeds them gets the same draws
either way), the warning filters put back to the kernel's first ones (a notebook's own ``simplefilter`` goes) and
warnings shown again once, and garbage collected. Modules stay imported: that is the saving.

A notebook that fails, or a reset that fails, takes the kernel with it (:func:`discard`); the next
notebook starts a fresh one. The caller decides when a kernel may be kept (``rxlib.reproduce``: on the CPU
unless ``RXLIB_FRESH_KERNELS=1``; on a GPU each notebook gets a fresh kernel, which returns the GPU's memory
when it ends). A kernel whose helper dies ends too (ipykernel's parent poller).
"""
from __future__ import annotations

import atexit
from pathlib import Path

#: Set to 1 to give every notebook of ``rxlib reproduce`` a fresh kernel (e.g. to rule out the kept kernel).
FRESH_VARIABLE = "RXLIB_FRESH_KERNELS"

# Run once when a kernel starts: the warning filters a fresh kernel has, where %reset cannot remove them.
_REMEMBER = """\
import sys as _rxlib_sys, types as _rxlib_types, warnings as _rxlib_warnings
_rxlib_sys.modules["_rxlib_kernel_start"] = _rxlib_types.SimpleNamespace(filters=list(_rxlib_warnings.filters))
"""

# Run between two notebooks (see the module docstring).
_RESET = """\
import sys as _rxlib_sys
if "matplotlib.pyplot" in _rxlib_sys.modules:
    _rxlib_sys.modules["matplotlib.pyplot"].close("all")
get_ipython().run_line_magic("reset", "-f")
import random as _rxlib_random, sys as _rxlib_sys, warnings as _rxlib_warnings
_rxlib_random.seed()  # from OS entropy, as in a fresh kernel; numpy's and torch's too where imported
if "numpy" in _rxlib_sys.modules:
    _rxlib_sys.modules["numpy"].random.seed()
if "torch" in _rxlib_sys.modules:
    _rxlib_sys.modules["torch"].seed()
_rxlib_warnings.resetwarnings()  # also forgets which warnings were shown
_rxlib_warnings.filters[:] = _rxlib_sys.modules["_rxlib_kernel_start"].filters  # a notebook's own filters go
get_ipython().run_line_magic("reset", "-f")
get_ipython().execution_count = 1  # the next notebook's cells are numbered from 1, as in a fresh kernel
__import__("gc").collect()
"""


class KernelResetError(RuntimeError):
    """Code run by the helper in its kept kernel (:func:`kept`, :func:`reset`) did not succeed."""


_kept = None  # (kernel name, working directory, KernelManager) of this process's kept kernel


def _run(manager, code: str) -> None:
    from jupyter_client.blocking import BlockingKernelClient

    client = BlockingKernelClient(**manager.get_connection_info(session=True), parent=manager)
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        reply = client.execute_interactive(code, store_history=False, timeout=120, output_hook=lambda msg: None)
    finally:
        client.stop_channels()
    if reply["content"].get("status") != "ok":
        raise KernelResetError(f"{reply['content'].get('ename', 'error')}: {reply['content'].get('evalue', '')}")


def kept(kernel_name: str, cwd: str | Path):
    """This process's kept kernel (a ``jupyter_client.KernelManager``), started in ``cwd`` if there is none
    alive with that name and working directory (any other one is shut down first)."""
    global _kept
    cwd = str(cwd)
    if _kept is not None and (_kept[:2] != (kernel_name, cwd) or not _kept[2].is_alive()):
        discard()
    if _kept is None:
        manager = _manager_class()(kernel_name=kernel_name,
                                   client_class="jupyter_client.asynchronous.AsyncKernelClient")
        # no cell history in the user's ~/.ipython database (nbclient's own kernels run with the same setting)
        manager.start_kernel(cwd=cwd, extra_arguments=["--HistoryManager.hist_file=:memory:"])
        _kept = (kernel_name, cwd, manager)
        try:
            _run(manager, _REMEMBER)
        except BaseException:
            discard()
            raise
    return _kept[2]


def _manager_class():
    """A ``KernelManager`` that hands out asynchronous clients, so that nbclient notices a kernel that dies
    mid-notebook (with a blocking client its wait for output blocks the check), and that remembers them:
    nbclient leaves open the client of a kernel it was given, :func:`close_clients` closes them."""
    from jupyter_client.manager import KernelManager

    class KeptKernelManager(KernelManager):
        def client(self, **kwargs):
            made = super().client(**kwargs)
            self.rxlib_clients = [*getattr(self, "rxlib_clients", []), made]
            return made

    return KeptKernelManager


def close_clients() -> None:
    """Close the clients nbclient opened on the kept kernel and left open (one per notebook)."""
    if _kept is not None:
        for client in getattr(_kept[2], "rxlib_clients", []):
            try:
                client.stop_channels()
            except Exception:  # noqa: BLE001 - a client already closed
                pass
        _kept[2].rxlib_clients = []


def reset() -> None:
    """Make the kept kernel look fresh to the next notebook; if that fails, end it (the next one is new)."""
    if _kept is None:
        return
    close_clients()
    try:
        _run(_kept[2], _RESET)
    except Exception:  # noqa: BLE001 - a kernel that cannot be reset is not reused
        discard()


def discard() -> None:
    """End the kept kernel, if any (the next :func:`kept` starts a fresh one)."""
    global _kept
    if _kept is not None:
        close_clients()
        manager, _kept = _kept[2], None
        try:
            manager.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001 - already dead: nothing left to end
            pass


atexit.register(discard)
