"""The Grad-CAM explorer in a real browser: JupyterLab + headless Chromium, driven by Playwright.

A notebook that builds a tiny model on a tiny synthetic RxRx1 and displays the explorer is written to a
temporary folder; JupyterLab serves it on 127.0.0.1 with a random token; Chromium (Debian's, at
/usr/bin/chromium; install it with ``scripts/install_browser.sh``) opens it, runs all cells, waits for
the explorer's picture, and operates every control as a user would: the sample, class and opacity
sliders by keyboard, the class search box by typing, the channel, comparison and colour-map controls,
the cell-type, layer and second-value dropdowns, the dimming checkbox, and the save button. After each
it checks that the picture changed (or the file appeared, with the bytes shown) and, at the end, that
every picture is what :func:`render_explorer_png` draws for that setting.

With ``RXLIB_SCREENSHOTS=<folder>`` the test also saves the explorer in side-by-side and single mode
(``explorer_compare.png``, ``explorer_single.png``) there.

Marked ``browser`` (deselected by default): ``python -m pytest -m browser tests/browser``. Every wait is
bounded; the server (with its kernel) and the browser are stopped even when the test fails.
"""
from __future__ import annotations

import base64
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from browser_setup import CHROMIUM, CHROMIUM_ARGS, EXPLORER_CELL, require_chromium

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_S = 60  # JupyterLab up and answering
STEP_S = 45  # one step in the page: load, kernel + first CAM, redraw
PAGE_S = 20  # default for a single Playwright action

pytestmark = pytest.mark.browser



def _requirements() -> None:
    require_chromium()
    pytest.importorskip("jupyterlab", reason="jupyterlab is needed to serve the notebook")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_notebook(folder: Path, data_root: Path) -> Path:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(EXPLORER_CELL.format(root=str(data_root)))]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    path = folder / "explorer.ipynb"
    nbformat.write(notebook, path)
    return path


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no server log)"


@contextmanager
def jupyter_lab(folder: Path):
    """Start JupyterLab on 127.0.0.1 serving ``folder``, with its config, runtime and settings in
    ``folder``; yield ``(base_url, token, log_path)``; stop it (and its kernels) on exit."""
    port, token = _free_port(), secrets.token_hex(16)
    home = folder / ".jupyter"
    (home / "config" / "labconfig").mkdir(parents=True)
    # no "news" prompt from JupyterLab over the page
    (home / "config" / "labconfig" / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
    # start the notebook's kernel without the "Select Kernel" dialog
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"autoStartDefaultKernel": true}')
    # the explorer's save button writes into the kernel's figures folder: one inside ``folder``
    env = {**os.environ, "RXLIB_FIGURES": str(folder / "figures"), "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_DATA_DIR": str(home / "data"),
           "IPYTHONDIR": str(home / "ipython"), "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    log_path = folder / "jupyter.log"
    # nothing beyond 127.0.0.1: no news feed, no update check, no PyPI extension manager
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--port-retries=0",
               f"--IdentityProvider.token={token}", "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={folder}",
               f"--LabApp.workspaces_dir={home / 'workspaces'}", f"--LabApp.user_settings_dir={home / 'settings'}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:  # CI containers run as root
        command.append("--allow-root")
    with open(log_path, "wb") as log:
        # own session, so that the server and the kernels it started can be stopped as one group
        server = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {server.returncode}:\n{_log_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{base_url}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"jupyter lab did not answer within {SERVER_START_S} s:\n{_log_tail(log_path)}")
            time.sleep(0.25)
        yield base_url, token, log_path
    finally:
        _stop(server)


def _stop(server: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM to the server's process group (the server shuts its kernels down), SIGKILL after ``grace_s``."""
    if server.poll() is None:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:  # kernels left behind in the group, or a server that ignored SIGTERM
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait(timeout=10)


def _api(base_url: str, token: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base_url}{path}", method="POST" if body is not None else "GET",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def _start_kernel(base_url: str, token: str, notebook: str) -> str:
    """Start the notebook's session (its kernel) through the REST API before the page opens it; return
    the kernel id. The POST returns once the kernel process is up.

    JupyterLab then connects to a running kernel: a websocket opened while the kernel is still
    starting can fail in jupyter_server (500 on /channels) and leave the widget manager without the
    kernel's comm messages ("Error displaying widget: model not found")."""
    session = _api(base_url, token, "/api/sessions",
                   {"path": notebook, "type": "notebook", "name": notebook, "kernel": {"name": "python3"}})
    return session["kernel"]["id"]


@contextmanager
def chromium_page(profile: Path):
    """A Playwright page in headless system Chromium with a fresh profile; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000}, timeout=STEP_S * 1000)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(PAGE_S * 1000)
            yield page
        finally:
            context.close()


def _run_all_cells(page, attempts: int = 3, wait_s: float = 10.0) -> None:
    """Run > Run All Cells, again while no cell was queued: the first websocket of a new kernel can
    fail in jupyter_server (a 500 on /channels while the kernel starts), and a request sent before the
    client reconnects is lost."""
    prompt = page.locator(".jp-Notebook .jp-InputPrompt").first
    before = prompt.inner_text().strip()  # "[ ]:" before the first run, "[1]:" after it
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            warnings.warn(f"Run All Cells queued nothing in {wait_s} s; clicking it again", stacklevel=2)
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():  # a kernel dialog despite autoStartDefaultKernel: take the preferred kernel
            dialog.first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if prompt.inner_text().strip() not in (before, "[ ]:", ""):  # "[*]:" queued, or a new count
                return
            time.sleep(0.2)
    raise TimeoutError(f"the notebook's cell was not queued after {attempts} x Run All Cells")


def _run_until_widget(page, attempts: int = 2) -> str:
    """Run all cells until the explorer's picture is shown; return its src.

    Runs again (once by default) when JupyterLab says "Error displaying widget": the widget's comm
    messages can reach a kernel connection that the page has just replaced."""
    for attempt in range(1, attempts + 1):
        _run_all_cells(page)
        page.wait_for_function(
            """() => { const img = document.querySelector('.rxlib-gradcam-image');
                       if (img && img.src && img.complete && img.naturalWidth > 0) return true;
                       const out = document.querySelector('.jp-Notebook .jp-OutputArea');
                       return out !== null && out.innerText.includes('Error displaying widget'); }""",
            timeout=STEP_S * 1000)
        if page.locator(".rxlib-gradcam-image").count():
            if attempt > 1:
                warnings.warn(f"the explorer showed only on run {attempt} of all cells", stacklevel=2)
            return page.get_attribute(".rxlib-gradcam-image", "src")
        print(f"run {attempt}: {page.inner_text('.jp-Notebook .jp-OutputArea')!r}", file=sys.stderr)
    raise AssertionError(f"the explorer was not displayed after {attempts} runs of all cells")


def _image_bytes(page) -> bytes:
    """The bytes the explorer's <img> shows (ipywidgets sets a blob: URL on every new value)."""
    encoded = page.evaluate("""async () => {
        const img = document.querySelector('.rxlib-gradcam-image');
        const blob = await (await fetch(img.src)).blob();
        return await new Promise(resolve => {
            const reader = new FileReader();
            reader.onload = () => resolve(reader.result.split(',')[1]);
            reader.readAsDataURL(blob);
        });
    }""")
    return base64.b64decode(encoded)


def _wait_for_new_image(page, old_src: str | None) -> str:
    """Wait until the explorer's <img> has a loaded source other than ``old_src``; return it."""
    page.wait_for_function(
        """old => { const img = document.querySelector('.rxlib-gradcam-image');
                    return img && img.src && img.src !== old && img.complete && img.naturalWidth > 0; }""",
        arg=old_src or "", timeout=STEP_S * 1000)
    return page.get_attribute(".rxlib-gradcam-image", "src")


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _step(page, src: str, shown: list, change: dict, what: str) -> str:
    """After ``what`` was done: wait for the new picture, note it with its setting, check it changed."""
    src = _wait_for_new_image(page, src)
    shown.append((_image_bytes(page), {**shown[-1][1], **change}))
    assert shown[-1][0] != shown[-2][0], f"{what} did not change the picture"
    return src


def _screenshot(page, name: str) -> None:
    """The explorer's widget as ``$RXLIB_SCREENSHOTS/name`` (nothing without that variable)."""
    folder = os.environ.get("RXLIB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        size = page.viewport_size
        page.set_viewport_size({"width": size["width"], "height": 1800})  # the whole widget in view
        try:
            page.locator(".rxlib-gradcam-explorer").screenshot(path=str(Path(folder) / name))
        finally:
            page.set_viewport_size(size)


def _operate_the_other_controls(page, src: str, shown: list, folder: Path) -> str:
    """The class search box, the layer, opacity, colour-map and cell-type controls, the comparison (each
    mode and its second selector), the dimming checkbox and the save button; return the last src."""
    search = page.locator(".rxlib-gradcam-class-search input")
    search.fill("5: UNTREATED (negative_control)")
    search.press("Enter")
    src = _step(page, src, shown, {"class_id": 5}, "choosing class 5 in the search box")
    page.locator(".rxlib-gradcam-layer-dropdown select").select_option("denseblock1")
    src = _step(page, src, shown, {"layer": "denseblock1"}, "choosing layer denseblock1")
    page.locator(".rxlib-gradcam-alpha-slider .noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    src = _step(page, src, shown, {"alpha": 0.5}, "moving the opacity slider")
    page.locator(".rxlib-gradcam-cmap-dropdown select").select_option("magma")
    src = _step(page, src, shown, {"cmap": "magma"}, "choosing the magma colour map")
    page.locator(".rxlib-gradcam-cell-type-dropdown select").select_option("U2OS")
    src = _step(page, src, shown, {"cell_type": "U2OS"}, "choosing cell type U2OS")
    compare = page.locator(".rxlib-gradcam-compare-buttons button")
    compare.filter(has_text="class").click()
    src = _step(page, src, shown, {"compare": ("class", 0)}, "comparing with a second class")
    page.locator(".rxlib-gradcam-compare-dropdown select").select_option(label="3: SYN-T0003 (treatment)")
    src = _step(page, src, shown, {"compare": ("class", 3)}, "choosing the second class")
    assert _pixels(shown[-1][0]).shape[0] > 1.8 * _pixels(shown[0][0]).shape[0], "no second row"
    _screenshot(page, "explorer_compare.png")
    for mode, value in (("cell type", "HEPG2"), ("layer", "denseblock3")):
        compare.filter(has_text=mode).click()
        src = _step(page, src, shown, {"compare": (mode, value)}, f"comparing with another {mode}")
    compare.filter(has_text="off").click()
    src = _step(page, src, shown, {"compare": None}, "switching the comparison off")
    _screenshot(page, "explorer_single.png")
    page.locator(".rxlib-gradcam-dim-checkbox input").click()
    src = _step(page, src, shown, {"dim": False}, "switching the dimming off")
    page.locator(".rxlib-gradcam-save-button").click()
    page.wait_for_function("() => document.querySelector('.rxlib-gradcam-saved').innerText.includes('.png')",
                           timeout=STEP_S * 1000)
    saved = sorted((folder / "figures").glob("gradcam_*.png"))
    assert [p.name for p in saved] == [
        "gradcam_U2OS-01_1_B03_1_class5_denseblock1_w2_magma_a50.png"], page.inner_text(".rxlib-gradcam-saved")
    assert saved[0].read_bytes() == _image_bytes(page), "the saved file is not the picture shown"
    return src


def test_explorer_redraws_in_jupyterlab(tmp_path, explorer_root, explorer_model, explorer_dataset):
    _requirements()
    from playwright.sync_api import Error as PlaywrightError

    from rxlib.explain.explorer import render_explorer_png

    started = time.monotonic()
    _write_notebook(tmp_path, explorer_root)
    with jupyter_lab(tmp_path) as (base_url, token, log_path), chromium_page(tmp_path / "chromium-profile") as page:
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        # JupyterLab's own noise when it replaces a kernel connection with requests in flight
        # ("Canceled future for create_subshell_request message before replies were done")
        try:
            _start_kernel(base_url, token, "explorer.ipynb")
            page.goto(f"{base_url}/lab/tree/explorer.ipynb?token={token}", timeout=STEP_S * 1000)
            # the notebook is open and its kernel is idle
            page.wait_for_selector(".jp-Notebook .jp-Cell .cm-content", timeout=STEP_S * 1000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=STEP_S * 1000)
            first_src = _run_until_widget(page)
            shown = [(_image_bytes(page), {"sample": 0, "class_id": 3, "channel": "composite"})]
            info = page.inner_text(".rxlib-gradcam-info")
            assert "HEPG2-01" in info and "class 3 " in info and "denseblock3" in info, info

            # the sample slider, then the class slider, by keyboard: one step to the right each
            src = first_src
            for name, change in (("sample", {"sample": 1}), ("class", {"class_id": 4})):
                handle = page.locator(".widget-slider", has_text=name).first.locator(".noUi-handle")
                handle.focus()
                page.keyboard.press("ArrowRight")
                src = _wait_for_new_image(page, src)
                shown.append((_image_bytes(page), {**shown[-1][1], **change}))
                assert shown[-1][0] != shown[-2][0], f"moving the {name} slider did not change the picture"

            # a channel button (the CAM comes from the cache)
            page.locator(".widget-toggle-buttons button", has_text="w2").first.click()
            src = _wait_for_new_image(page, src)
            shown.append((_image_bytes(page), {**shown[-1][1], "channel": "w2"}))
            assert shown[-1][0] != shown[-2][0], "choosing channel w2 did not change the picture"
            info = page.inner_text(".rxlib-gradcam-info")
            assert "HEPG2-01" in info and "class 4 " in info, info

            src = _operate_the_other_controls(page, src, shown, tmp_path)
            assert "class 5 " in page.inner_text(".rxlib-gradcam-info")

            # the browser shows what render_explorer_png draws here (same seed, same weights); the
            # loose tolerance leaves room for float differences between the two processes
            for png, state in shown:
                expected = render_explorer_png(explorer_model, explorer_dataset,
                                               **{"cell_type": "HEPG2", "layer": "denseblock3", **state})
                assert _pixels(png).shape == _pixels(expected).shape, state
                assert np.abs(_pixels(png) - _pixels(expected)).mean() < 1.0, f"{state}: the picture differs"
            problems = [p for p in problems if "Canceled future for" not in p]
            assert not problems, problems
        except Exception:
            screenshot = tmp_path / "failure.png"
            try:
                page.screenshot(path=str(screenshot), timeout=5000)
            except PlaywrightError as exc:  # the original failure matters more than a missing screenshot
                screenshot = f"none ({exc})"
            print(f"screenshot: {screenshot}\nserver log:\n{_log_tail(log_path)}", file=sys.stderr)
            raise
    assert time.monotonic() - started < 180, "the browser test took too long"


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"  # a zombie has ended
    except (OSError, IndexError):
        return True


def test_stop_ends_the_server_and_its_children(tmp_path):
    """_stop ends a server-like process and the child it started, even when SIGTERM is ignored."""
    child_pid = tmp_path / "child.pid"
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
              f"open({str(child_pid)!r}, 'w').write(str(child.pid)); time.sleep(600)")
    server = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 20
    while not child_pid.is_file() or not child_pid.read_text():
        assert time.monotonic() < deadline, "the child process did not start"
        time.sleep(0.05)
    _stop(server, grace_s=1.0)
    assert server.returncode is not None
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 10
    while not _gone(pid):
        assert time.monotonic() < deadline, f"child {pid} still runs"
        time.sleep(0.05)
