"""What every dashboard shares: a training thread with Stop, a progress bar, a status line and a
plot redrawn while the model trains (``Dashboard``), the callback that connects ``Model.fit`` to
it (``DashboardCallback``), and the small helpers both dashboards use.

ipywidgets and matplotlib are imported only when a dashboard is built or drawn.
"""
import io
import sys
import threading
import time
import warnings

from ...errors import ConfigError
from ... import Callback

FRAME_INTERVAL = 0.3     # seconds between redrawn plots while training
PROGRESS_INTERVAL = 0.2  # seconds between progress-bar and status updates


def parse_hidden(text):
    """'128, 64' → (128, 64); '' → () (no hidden layer: a linear model)."""
    parts = [p for p in str(text).replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
        parts = None
    if parts is None or any(s < 1 for s in sizes):
        raise ConfigError(f"hidden layers: expected positive whole numbers separated by commas, "
                          f"like '128, 64'; got {text!r}")
    return sizes


def stopped_by_you(steps, planned):
    """The note for a run that Stop ended early (both dashboards say it the same way)."""
    return f"stopped by you after {steps} of {planned} steps"


def load_ipywidgets():
    """The ipywidgets module, imported on first use: only a dashboard needs it."""
    import ipywidgets
    return ipywidgets


class Dashboard:
    """What both dashboards share: a training thread, Stop, the progress bar, the status line
    and the plot (an ipywidgets.Image holding a PNG, replaced as training goes)."""

    css_class = "tinynn-dashboard"

    def __init__(self):
        w = load_ipywidgets()
        self._stop = threading.Event()
        self._draw_lock = threading.Lock()
        self._thread = None
        self.model = self._active = self.live_history = None
        self._last_frame = self._last_progress = 0.0
        self._frame_gap = FRAME_INTERVAL
        self.error = None
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger",
                                    disabled=True, tooltip="end the run after the current step")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="progress",
                                      layout=w.Layout(width="320px"))
        self.status = w.HTML("ready")
        self.plot = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.plot.add_class("tinynn-plot")
        self.stop_button.on_click(lambda _: self.stop())

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs):
        """The live widget view, plus a PNG of the plot and a one-line text. A frontend that has
        the widget's state (a running kernel) shows the dashboard; one without it (a notebook
        opened before it ran, an untrusted notebook, GitHub, nbviewer) shows the picture instead
        of the widget's raw ``VBox(children=…)`` repr."""
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["image/png"] = self._png()
        bundle["text/plain"] = f"{type(self).__name__} (run the notebook to use it)"
        return bundle

    def show(self):
        """Display the current plot as a plain, static image (it stays visible in a saved
        notebook or on GitHub, where widgets do not render)."""
        from IPython.display import Image, display
        display(Image(data=self._png()))

    def _png(self):
        with self._draw_lock:
            buffer = io.BytesIO()
            self.figure().savefig(buffer, format="png")
        return buffer.getvalue()

    def _redraw(self):
        start = time.monotonic()
        self.plot.value = self._png()
        self._last_frame = time.monotonic()
        # drawing may take at most ~1/5 of the time: a slow machine gets fewer frames, not a
        # slower training run
        self._frame_gap = max(FRAME_INTERVAL, 4 * (self._last_frame - start))

    def _say(self, text):
        self.status.value = text

    # ------------------------------------------------------------------ running
    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def stop(self):
        """Ask the current run to end after its current step."""
        self._stop.set()
        if self._active is not None:
            self._active.stop_training = True

    def wait(self, timeout=None):
        """Block until a background run ends; True if nothing is running any more."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _start(self, job, wait):
        """Run ``job()`` here (wait=True, returns its result) or in a background thread."""
        self._stop.clear()
        self.error = None
        self._set_busy(True)
        if not wait:
            self._thread = threading.Thread(target=self._background, args=(job,), daemon=True,
                                            name=f"tinynn-{type(self).__name__}")
            self._thread.start()
            return None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = job()
        finally:
            self._set_busy(False)
        # each warning once, without a file path, so notebook outputs stay reproducible
        for text in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
            print(text, file=sys.stderr)
        return result

    def _background(self, job):
        try:
            job()
        except Exception as e:  # a dashboard must survive anything: report it on screen
            self.error = e
            self._say(f"<b>error</b>: {type(e).__name__}: {e}")
        finally:
            self._set_busy(False)

    def _set_busy(self, busy):
        for control in self._controls():
            control.disabled = busy
        self.stop_button.disabled = not busy

    def _tick(self, step, describe):
        """Called after every step: move the progress bar and redraw now and then."""
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_INTERVAL:
            self.progress.value = min(step, self.progress.max)
            self._say(describe())
            self._last_progress = now
        if now - self._last_frame >= self._frame_gap:
            self._redraw()


class DashboardCallback(Callback):
    """A ``Model.fit`` callback that keeps a dashboard in step with its training run: it shows
    the run's history as it grows, and after every batch passes on a press of Stop (as
    ``model.stop_training``), records in the lab's ``Run`` any rate the slider set mid-run, moves
    the progress bar and now and then redraws the plot. ``describe()`` gives the status line."""

    def __init__(self, dashboard, describe, run=None):
        self.dashboard, self.describe, self.run = dashboard, describe, run

    def on_train_begin(self, model):
        self.dashboard.live_history = model.history
        if self.run is not None:
            self.run.history = model.history

    def on_batch_end(self, model, step, logs):
        if self.dashboard._stop.is_set():
            model.stop_training = True
        if self.run is not None and model.optimizer.schedule is None:
            self.run.note_lr(step, model.optimizer.lr)
        self.dashboard._tick(step, self.describe)
