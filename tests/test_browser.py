"""The learning-rate lab in a real JupyterLab, driven by headless Chromium (Playwright).

Starts JupyterLab on 127.0.0.1 (own runtime/config/data/settings dirs, a token), opens a copy of
notebooks/07_learning_rate_lab.ipynb, runs all cells, checks that the LivePlot cell's figure was
redrawn several times *while it ran*, moves the lab's learning-rate and epochs sliders, clicks
Train, waits for the plot to change (and change again: live frames), and saves screenshots in the
test's tmp dir. The server, the kernel and the browser are always stopped, and the test checks that
no process it started is left behind.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` Python package (its own browser
download is never used); skipped with a reason when either is missing.
"""
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "07_learning_rate_lab.ipynb"

if not Path(CHROMIUM).exists():
    pytest.skip(f"browser test: {CHROMIUM} is missing (apt-get install -y chromium)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="browser test: the playwright package is missing "
                                      "(pip install playwright; never `playwright install`)")
pytest.importorskip("jupyterlab", reason="browser test: jupyterlab is not installed")


# ============================================================================ processes
def _children_map():
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid):
    """Every process below ``pid`` (children, grandchildren, ...)."""
    children, found, todo = _children_map(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid):
    """Running (a zombie waiting to be reaped is dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def describe(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:150]
    except OSError:
        return "?"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_all(pids, sig=signal.SIGKILL):
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


# ============================================================================ server and browser
@contextlib.contextmanager
def jupyter_lab(root, home):
    """A JupyterLab server for ``root``; yields (base_url, token, process). Always stopped."""
    port, token = free_port(), secrets.token_hex(16)
    dirs = {name: home / name for name in ("runtime", "config", "data", "settings", "workspaces",
                                           "ipython")}
    for folder in dirs.values():
        folder.mkdir(parents=True)
    # all cells rendered (no virtual scrolling), no update or news checks
    for plugin, values in {
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification": {"checkForUpdates": False,
                                                            "fetchNews": "false"}}.items():
        path = dirs["settings"] / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
               JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
               JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]), IPYTHONDIR=str(dirs["ipython"]))
    env.pop("MPLBACKEND", None)
    command = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--allow-root",
               "--ServerApp.open_browser=False", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    log = open(home / "jupyter.log", "wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    started = set()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"JupyterLab exited:\n{(home / 'jupyter.log').read_text()[-3000:]}"
            try:
                request = urllib.request.Request(f"{base}/api/status",
                                                 headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(request, timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not start within 60 s"
                time.sleep(0.25)
        yield base, token, server
    finally:
        started = descendants(server.pid)  # the kernel runs in its own session: remember it
        with contextlib.suppress(OSError):
            request = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                             headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(request, timeout=5).close()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=5)
        kill_all([pid for pid in started if alive(pid)])
        log.close()


@contextlib.contextmanager
def chromium(profile):
    """A headless Debian Chromium page with a fresh profile. Always closed."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1500, "height": 1100})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


# ============================================================================ JupyterLab, from the page
NOTEBOOK_READY = """() => {
  const app = window.jupyterapp, panel = app && app.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
                 && panel.sessionContext.session.kernel;
  return !!(kernel && kernel.status === 'idle' && panel.context.isReady && panel.content.widgets.length);
}"""

RUN_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget, cells = panel.content.model.cells;
  const hash = s => { let h = 0; for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0;
                      return s.length + ':' + h; };
  let pending = 0; const errors = [];
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    if (cell.executionCount === null) pending++;
    for (let j = 0; j < cell.outputs.length; j++) {
      const out = cell.outputs.get(j).toJSON();
      if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
    }
  }
  const live = [];
  for (const node of document.querySelectorAll('.jp-CodeCell')) {
    const source = node.querySelector('.jp-InputArea-editor');
    const img = node.querySelector('.jp-OutputArea-output img');
    if (source && img && source.textContent.includes('LivePlot((')) live.push(hash(img.src));
  }
  return {pending, errors, live, kernel: panel.sessionContext.session.kernel.status};
}"""

IMAGE_HASH = """img => { let h = 0; const s = img.src;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0; return s.length + ':' + h; }"""


def run_all_cells(page, timeout=150):
    """Clear outputs, run every cell, and sample the LivePlot figure while it runs. Returns the
    set of distinct LivePlot frames seen."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.model.cells"
                           ".get(1).executionCount === null")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    frames, deadline = set(), time.monotonic() + timeout
    while True:
        state = page.evaluate(RUN_STATE)
        assert not state["errors"], f"a notebook cell failed: {state['errors']}"
        frames.update(state["live"])
        if state["pending"] == 0 and state["kernel"] == "idle":
            return frames
        assert time.monotonic() < deadline, f"notebook still running after {timeout} s: {state}"
        time.sleep(0.05)


def drag(page, handle, dx):
    """Drag a slider's handle ``dx`` pixels sideways with the mouse, as a person would."""
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=10)
    page.mouse.up()


# ============================================================================ the test
def test_learning_rate_lab_in_jupyterlab(tmp_path):
    started = time.monotonic()
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    shutil.copy(NOTEBOOK, workdir / NOTEBOOK.name)
    ours_before = descendants(os.getpid())
    seen = set()
    with jupyter_lab(workdir, tmp_path / "jupyter") as (base, token, server), \
            chromium(tmp_path / "chromium-profile") as page:
        page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}", wait_until="domcontentloaded",
                  timeout=60_000)
        page.wait_for_function(NOTEBOOK_READY, timeout=60_000, polling=250)

        live_frames = run_all_cells(page)
        seen |= descendants(os.getpid())
        assert len(live_frames) >= 3, (
            f"the LivePlot figure should be redrawn while its cell runs; saw {len(live_frames)} frames")

        lab = page.locator(".tinynn-lr-lab").first
        lab.scroll_into_view_if_needed()
        plot = lab.locator("img.tinynn-plot")
        readout = lab.locator(".tinynn-lr-slider .widget-readout")
        before_lr, before_plot = readout.inner_text(), plot.evaluate(IMAGE_HASH)

        drag(page, lab.locator(".tinynn-lr-slider .noUi-handle"), -45)        # a smaller rate
        page.wait_for_function("([el, old]) => el.textContent.trim() !== old",
                               arg=[readout.element_handle(), before_lr], timeout=10_000)
        new_lr = float(readout.inner_text())
        epochs_slider = lab.locator(".widget-slider", has_text="epochs")
        drag(page, epochs_slider.locator(".noUi-handle"), 400)               # a long run...
        epochs = int(epochs_slider.locator(".widget-readout").inner_text())
        assert epochs == 30, "dragging the epochs slider to the right end should give 30"
        lab.locator(".widget-dropdown", has_text="batch size").locator("select").select_option("16")
        hidden = lab.locator(".widget-text", has_text="hidden layers").locator("input")
        hidden.fill("256, 256")  # slower steps: on a busy machine the run outlasts the sampling
        hidden.press("Enter")
        time.sleep(0.5)  # let the widget values reach the kernel before the click does
        status = lab.locator(".widget-html").first
        last_run = int(re.search(r"run (\d+)", status.inner_text()).group(1))
        lab.locator("button", has_text="Train").click()

        # ...whose plot must change several times while it trains; then Stop ends it early
        this_run, frames, deadline = f"run {last_run + 1}:", set(), time.monotonic() + 60
        while len(frames - {before_plot}) < 2:
            text = status.inner_text()
            if text.startswith(this_run):
                assert " — after " not in text, f"the run ended before Stop: {text}"
                frames.add(plot.evaluate(IMAGE_HASH))
            assert time.monotonic() < deadline, f"the plot did not update while training: {text}"
            time.sleep(0.05)
        seen |= descendants(os.getpid())
        lab.locator("button", has_text="Stop").click()
        finished = f"run {last_run + 1}: "
        page.wait_for_function("([el, prefix]) => el.textContent.startsWith(prefix) && "
                               "el.textContent.includes(' — after ')",
                               arg=[status.element_handle(), finished], timeout=30_000)
        text = status.inner_text()
        used_lr = float(re.search(r"lr=(\S+) ", text).group(1))
        assert used_lr == pytest.approx(new_lr, rel=0.06), f"the run should use the slider's rate: {text}"
        assert used_lr < float(before_lr) and "batch 16, hidden [256, 256]" in text, text
        steps, planned = map(int, re.search(r"stopped by you after (\d+) of (\d+) steps", text).groups())
        assert 0 < steps < planned == 30 * 313, text
        assert lab.locator("button", has_text="Train").is_enabled()

        print(f"LivePlot frames seen while its cell ran: {len(live_frames)}; lab plot frames "
              f"seen during the clicked run: {len(frames - {before_plot})}")
        lab.screenshot(path=tmp_path / "learning_rate_lab.png")
        page.screenshot(path=tmp_path / "jupyterlab.png")
        print(f"screenshots: {tmp_path / 'learning_rate_lab.png'}, {tmp_path / 'jupyterlab.png'}")
    assert server.poll() is not None, "the server should have stopped"
    leftovers = [pid for pid in (seen | descendants(os.getpid())) - ours_before if alive(pid)]
    assert not leftovers, "processes left behind: " + "; ".join(map(describe, leftovers))
    print(f"browser test took {time.monotonic() - started:.0f} s")


# ============================================================================ before the kernel runs
DASHBOARDS_NOTEBOOK = [
    "import tinynn as tn\nfrom tinynn.course.widgets import LearningRateLab, Playground\n"
    "x, y = tn.data.moons(200, noise=0.15, seed=0)\n"
    "lab = LearningRateLab(x, y, hidden=(8,), epochs=2)\nlab.train(wait=True)\nlab",
    "Playground(dataset='moons', n_samples=100, hidden=(4,))",
]


def executed_notebook(path, monkeypatch):
    """Write a notebook with the two dashboards, executed and saved with its outputs, as the
    course's notebooks are committed (the kernel imports this checkout's tinynn)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in DASHBOARDS_NOTEBOOK])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbclient.NotebookClient(notebook, timeout=120).execute()
    nbformat.write(notebook, path)


def test_a_saved_notebook_shows_the_dashboards_as_pictures_before_it_runs(tmp_path, monkeypatch):
    # A student opens a committed notebook: no kernel has run, the widgets have no state, so the
    # frontend picks another part of the output bundle: the dashboards' PNG, not their VBox repr.
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    executed_notebook(workdir / "dashboards.ipynb", monkeypatch)
    ours_before = descendants(os.getpid())
    with jupyter_lab(workdir, tmp_path / "jupyter") as (base, token, server), \
            chromium(tmp_path / "chromium-profile") as page:
        for frontend, url in (("jupyterlab", "lab/tree"), ("notebook7", "notebooks")):
            page.goto(f"{base}/{url}/dashboards.ipynb?token={token}",
                      wait_until="domcontentloaded", timeout=60_000)
            outputs = page.locator(".jp-OutputArea-output")
            outputs.nth(1).wait_for(timeout=60_000)
            for i in range(2):
                output = outputs.nth(i)
                text = output.inner_text()
                assert "VBox" not in text and "widget" not in text.lower(), (
                    f"{frontend}: output {i} shows {text[:70]!r}… instead of a picture")
                size = output.locator("img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
                assert size[0] > 600 and size[1] > 250, f"{frontend}: output {i} image is {size}"
            page.screenshot(path=tmp_path / f"{frontend}_before_running.png", full_page=True)
        print(f"screenshots: {tmp_path}/jupyterlab_before_running.png, "
              f"{tmp_path}/notebook7_before_running.png")
    assert server.poll() is not None, "the server should have stopped"
    leftovers = [pid for pid in descendants(os.getpid()) - ours_before if alive(pid)]
    assert not leftovers, "processes left behind: " + "; ".join(map(describe, leftovers))
