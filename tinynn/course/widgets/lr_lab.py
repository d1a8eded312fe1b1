"""The learning-rate lab: train a small MLP again and again with the learning rate, optimizer,
schedule, batch size, epochs and hidden layers you pick, and compare the runs' loss curves
(earlier runs stay on the plot, faded). A learning-rate range test suggests a good rate.

    lab = LearningRateLab(x, y, validation=(xv, yv))
    lab.configure(lr=3e-3, optimizer="sgd").train(wait=True)   # one Run, kept in lab.runs

``lr_range_test`` here is the framework's ``tinynn.lr_range_test`` (tinynn/lr_finder.py) with a
result that can ``plot()``: drawing is course tooling, the framework imports no matplotlib.
"""
import dataclasses
import functools
import math

import numpy as np

from ... import lr_finder
from ... import optimizers as optim  # get() by name
from ... import CosineDecay, Model, StepDecay, WarmUp
from ...errors import ConfigError
from ...losses import MSE, SoftmaxCrossEntropy
from ...models import build_mlp
from ...random import seed as seed_everything
from .dashboard import Dashboard, DashboardCallback, load_ipywidgets, parse_hidden, stopped_by_you

OPTIMIZER_NAMES = ("sgd", "momentum", "rmsprop", "adam")
SCHEDULES = ("constant", "step decay", "cosine", "warm-up + cosine")
RUNS_SHOWN = 8            # the lab draws (and its legend names) the latest runs only
LOSS_CURVE_SMOOTHING = 0.9  # β of the moving average the lab draws each run's loss with


def make_schedule(name, lr, total_steps):
    """The learning rate for a run of ``total_steps`` steps peaking at ``lr``: a constant, a step
    decay (÷10 after each third), a cosine decay to 0, or a 10 % linear warm-up then cosine."""
    total_steps = max(int(total_steps), 1)
    if name == "constant":
        return lr
    if name == "step decay":
        return StepDecay(lr, step_size=max(total_steps // 3, 1), gamma=0.1)
    if name == "cosine":
        return CosineDecay(lr, total_steps)
    if name == "warm-up + cosine":
        warmup = max(total_steps // 10, 1)
        return WarmUp(CosineDecay(lr, max(total_steps - warmup, 1)), warmup)
    raise ConfigError(f"unknown schedule {name!r}; expected one of {list(SCHEDULES)}")



def steps_as_epochs(steps, steps_per_epoch):
    """How far a run got, truthfully: '6 epochs', or '6 epochs and 123 of 469 steps' when it
    ended inside an epoch (Model.fit records a stopped epoch's partial mean loss as an epoch)."""
    full, extra = divmod(steps, steps_per_epoch)
    epochs = f"{full} epoch{'' if full == 1 else 's'}"
    if not extra:
        return epochs
    partial = f"{extra} of {steps_per_epoch} steps"
    return f"{epochs} and {partial}" if full else f"{partial} of the first epoch"


def finite_prefix(values):
    """``values`` up to (not including) the first non-finite one: a diverged run's curve ends
    where its loss became inf or nan."""
    end = next((i for i, value in enumerate(values) if not math.isfinite(value)), len(values))
    return values[:end]


class PlottableRangeTestResult(lr_finder.RangeTestResult):
    """``tinynn.lr_range_test``'s result with a ``plot()`` method: drawing is course tooling,
    since the framework imports no matplotlib."""

    def plot(self, ax=None):
        from ..viz import plot_lr_range_test
        return plot_lr_range_test(self, ax)


# wraps: help() and Shift-Tab show the framework's signature (via __wrapped__), this docstring
@functools.wraps(lr_finder.lr_range_test, assigned=("__name__", "__qualname__"))
def lr_range_test(*args, **kwargs):
    """``tinynn.lr_range_test`` (tinynn/lr_finder.py: read it there), with a result that can
    ``plot()``."""
    return PlottableRangeTestResult(**vars(lr_finder.lr_range_test(*args, **kwargs)))


@dataclasses.dataclass
class Run:
    """One press of Train: its settings, its model and its history (filled in as it trains)."""
    number: int
    settings: dict
    planned_steps: int
    model: Model = dataclasses.field(repr=False)
    history: dict = dataclasses.field(default=None, repr=False)
    stopped_by_user: bool = False
    lr_changes: list = dataclasses.field(default_factory=list)  # (step, new lr): slider moves

    def note_lr(self, step, lr):
        """Record the rate ``step`` used when it differs from the rate before (the slider moved
        during the run)."""
        before = self.lr_changes[-1][1] if self.lr_changes else self.settings["lr"]
        if lr != before:
            self.lr_changes.append((step, lr))

    @property
    def steps(self):
        return len(self.history["step_loss"]) if self.history else 0

    @property
    def diverged(self):
        return bool(self.history and str(self.history.get("stopped") or "").startswith("diverged"))

    @property
    def label(self):
        """The legend entry: number, optimizer, the rate(s) used, schedule, batch size."""
        s = self.settings
        schedule = "" if s["schedule"] == "constant" else f" {s['schedule']}"
        moved = f"→{self.lr_changes[-1][1]:.1e}" if self.lr_changes else ""
        return f"{self.number}: {s['optimizer']} {s['lr']:.1e}{moved}{schedule} bs {s['batch_size']}"

    def _rates(self):
        """'lr=1.0e-03 (constant)', or the rates actually used when the slider moved mid-run."""
        s, changes = self.settings, self.lr_changes
        if not changes:
            return f"lr={s['lr']:.1e} ({s['schedule']})"
        step, last = changes[-1]
        how = "" if len(changes) == 1 else f" {len(changes)} times"
        at = "at" if len(changes) == 1 else "last at"
        return f"lr={s['lr']:.1e} → {last:.1e} (moved{how} during the run, {at} step {step})"

    def summary(self):
        """One line: settings and where the run ended (numbers rounded for stable output)."""
        s, h = self.settings, self.history or {}
        text = (f"run {self.number}: {s['optimizer']} {self._rates()}, "
                f"batch {s['batch_size']}, hidden {list(s['hidden'])}")
        if self.diverged:
            return f"{text} — {h['stopped']}"
        parts = [f"{key} {h[key][-1]:.3f}" for key in ("loss", "val_loss", "val_accuracy")
                 if h.get(key)]
        done = steps_as_epochs(self.steps, self.planned_steps // s["epochs"])
        text += f" — after {done}: " + ", ".join(parts)
        if self.stopped_by_user:
            text += f" ({stopped_by_you(self.steps, self.planned_steps)})"
        return text

    __str__ = summary


class LearningRateLab(Dashboard):
    """Train a small MLP on (x, y) again and again with different learning rates and compare.

    Each press of **Train** starts a *fresh* model from the same initial weights (seeded), so the
    runs differ only in the settings you changed. The learning-rate slider also acts *during* a
    run (try lowering it when the loss starts to bounce). **Reset** draws new initial weights and
    clears the runs. **LR range test** sweeps the rate exponentially and suggests one; **Use
    suggestion** moves the slider there. Every run is kept in ``lab.runs`` (settings, history,
    model), the latest model is ``lab.model``.
    """

    css_class = "tinynn-lr-lab"

    def __init__(self, x, y, validation=None, hidden=(64,), activation="relu", optimizer="adam",
                 lr=1e-3, batch_size=64, epochs=3, schedule="constant", seed=0,
                 lr_range=(1e-5, 10.0), range_test_steps=200):
        super().__init__()
        w = load_ipywidgets()
        x = np.asarray(x)
        self.x = x if x.dtype.kind == "f" else x.astype(np.float32)
        self.y, self.validation = np.asarray(y), validation
        self.activation, self.seed, self.range_test_steps = activation, seed, range_test_steps
        self.runs, self.range_result = [], None
        wide = {"description_width": "initial"}
        lo, hi = math.log10(lr_range[0]), math.log10(lr_range[1])
        self.lr_slider = w.FloatLogSlider(value=lr, base=10, min=lo, max=hi, step=0.05,
                                          description="learning rate", readout_format=".1e",
                                          continuous_update=False, style=wide,
                                          layout=w.Layout(width="430px"))
        self.lr_slider.add_class("tinynn-lr-slider")
        self.optimizer_menu = w.Dropdown(options=OPTIMIZER_NAMES, value=optimizer,
                                         description="optimizer", layout=w.Layout(width="200px"))
        self.schedule_menu = w.Dropdown(options=SCHEDULES, value=schedule, description="schedule",
                                        layout=w.Layout(width="250px"))
        self.batch_size_menu = w.Dropdown(options=sorted({16, 32, 64, 128, 256, batch_size}),
                                          value=batch_size, description="batch size", style=wide,
                                          layout=w.Layout(width="160px"))
        self.epochs_slider = w.IntSlider(value=epochs, min=1, max=max(30, epochs),
                                         description="epochs", continuous_update=False,
                                         layout=w.Layout(width="300px"))
        self.hidden_text = w.Text(value=", ".join(map(str, hidden)), description="hidden layers",
                                  placeholder="e.g. 128, 64", continuous_update=False, style=wide,
                                  layout=w.Layout(width="230px"))
        self.train_button = w.Button(description="Train", icon="play", button_style="primary")
        self.reset_button = w.Button(description="Reset", icon="refresh",
                                     tooltip="new initial weights; forget all runs")
        self.range_button = w.Button(description="LR range test", icon="search",
                                     tooltip="sweep the learning rate and suggest one")
        self.use_button = w.Button(description="Use suggestion", disabled=True)
        self.suggestion_label = w.HTML("")
        self.train_button.on_click(lambda _: self.train())
        self.reset_button.on_click(lambda _: self.reset())
        self.range_button.on_click(lambda _: self.range_test())
        self.use_button.on_click(lambda _: self.use_suggestion())
        self.lr_slider.observe(self._on_lr, names="value")
        self.widget = w.VBox([
            w.HBox([self.lr_slider, self.optimizer_menu, self.schedule_menu]),
            w.HBox([self.batch_size_menu, self.epochs_slider, self.hidden_text]),
            w.HBox([self.train_button, self.stop_button, self.reset_button, self.range_button,
                    self.use_button]),
            w.HBox([self.progress, self.status]),
            self.suggestion_label,
            self.plot,
        ]).add_class(self.css_class)
        self.model = self._build_model(self.settings())
        self._redraw()

    # ------------------------------------------------------------------ settings
    def settings(self):
        """The settings the widgets show now, as a dict."""
        return {"optimizer": self.optimizer_menu.value, "lr": float(self.lr_slider.value),
                "schedule": self.schedule_menu.value, "batch_size": int(self.batch_size_menu.value),
                "epochs": int(self.epochs_slider.value), "hidden": parse_hidden(self.hidden_text.value),
                "activation": self.activation}

    def configure(self, lr=None, optimizer=None, schedule=None, batch_size=None, epochs=None,
                  hidden=None):
        """Set widgets from code (exactly as if you moved them); None leaves a setting alone."""
        if lr is not None:
            lo, hi = 10 ** self.lr_slider.min, 10 ** self.lr_slider.max
            if not lo * 0.999 <= lr <= hi * 1.001:
                raise ConfigError(f"learning rate {lr!r} is outside the slider's range "
                                  f"[{lo:g}, {hi:g}]; build the lab with lr_range=(…)")
            self.lr_slider.value = lr
        if optimizer is not None:
            self.optimizer_menu.value = optimizer
        if schedule is not None:
            self.schedule_menu.value = schedule
        if batch_size is not None:
            if batch_size not in self.batch_size_menu.options:
                self.batch_size_menu.options = sorted({*self.batch_size_menu.options, batch_size})
            self.batch_size_menu.value = batch_size
        if epochs is not None:
            self.epochs_slider.max = max(self.epochs_slider.max, epochs)
            self.epochs_slider.value = epochs
        if hidden is not None:
            self.hidden_text.value = ", ".join(map(str, hidden))
        return self

    def _controls(self):
        return [self.train_button, self.reset_button, self.range_button, self.optimizer_menu,
                self.schedule_menu, self.batch_size_menu, self.epochs_slider, self.hidden_text]

    def _steps_per_epoch(self, batch_size):
        return -(-len(self.x) // batch_size)

    def _build_model(self, settings, constant_lr=False):
        """A fresh model with the lab's initial weights (same seed → same weights)."""
        seed_everything(self.seed)
        classify = self.y.dtype.kind in "iu"
        outputs = int(self.y.max()) + 1 if classify else int(np.prod(self.y.shape[1:]) or 1)
        net = build_mlp(settings["hidden"], outputs, settings["activation"], init="xavier_uniform",
                        flatten=self.x.ndim > 2)
        net.forward(self.x[:1], training=False)
        total = settings["epochs"] * self._steps_per_epoch(settings["batch_size"])
        lr = settings["lr"] if constant_lr else make_schedule(settings["schedule"], settings["lr"], total)
        return Model(net, SoftmaxCrossEntropy() if classify else MSE(),
                     optim.get(settings["optimizer"], lr=lr))

    def _on_lr(self, change):
        """The slider acts at once, even in the middle of a run (unless a schedule sets the rate)."""
        if self.model is not None and self.model.optimizer.schedule is None:
            self.model.optimizer.lr = change["new"]
        if not self.running:
            self._redraw()

    # ------------------------------------------------------------------ actions
    def train(self, wait=False):
        """Start a run with the current settings; with ``wait=True`` train here and return the
        finished Run, otherwise train in the background (``lab.wait()`` joins it)."""
        if self.running:
            self._say("already running: press Stop first")
            return None
        try:
            settings = self.settings()
        except ConfigError as e:
            self._say(f"<b>error</b>: {e}")
            if wait:
                raise
            return None
        model = self._build_model(settings)
        self.model = self._active = model
        run = Run(len(self.runs) + 1, settings,
                  settings["epochs"] * self._steps_per_epoch(settings["batch_size"]), model)
        self.runs.append(run)
        self.progress.max, self.progress.value = run.planned_steps, 0
        self._say(f"run {run.number}: training…")

        def describe():
            last = run.history["step_loss"][-1] if run.steps else float("nan")
            return (f"run {run.number}: step {run.steps}/{run.planned_steps} · loss {last:.4f} · "
                    f"lr {model.optimizer.lr:.1e}")

        def job():
            model.fit(self.x, self.y, epochs=settings["epochs"], batch_size=settings["batch_size"],
                      validation=self.validation, seed=self.seed, callbacks=[DashboardCallback(self, describe, run)])
            # asked after fit, not inside it: Stop may land at any moment of a step
            run.stopped_by_user = (self._stop.is_set() and not run.diverged
                                   and run.steps < run.planned_steps)
            self.progress.value = run.steps
            self._redraw()
            self._say(run.summary())
            return run

        return self._start(job, wait)

    def range_test(self, wait=False, num_steps=None):
        """Run the learning-rate range test on a fresh copy of the model (slider's range, the
        chosen optimizer and batch size); the result is ``lab.range_result`` (also returned with
        ``wait=True``) and its suggestion appears next to the buttons."""
        if self.running:
            self._say("already running: press Stop first")
            return None
        settings = self.settings()
        model = self._build_model(settings, constant_lr=True)
        num_steps = num_steps or self.range_test_steps
        self._active = model
        self.progress.max, self.progress.value = num_steps, 0
        self._say("range test: running…")

        def on_step(step, lr, loss):
            if self._stop.is_set():
                model.stop_training = True
            self._tick(step, lambda: f"range test: step {step}/{num_steps} · lr {lr:.1e} · "
                                     f"smoothed loss {loss:.4f}")

        def job():
            result = lr_range_test(model, self.x, self.y, 10 ** self.lr_slider.min,
                                   10 ** self.lr_slider.max, num_steps, settings["batch_size"],
                                   seed=self.seed, on_step=on_step)
            self.range_result = result
            # full when the test ended by itself (at the top rate or when the loss exploded)
            self.progress.value = len(result.lrs) if self._stop.is_set() else num_steps
            self.use_button.disabled = False
            self.suggestion_label.value = f"<b>{result}</b>"
            self._redraw()
            self._say(f"range test done: {len(result.lrs)} steps")
            return result

        return self._start(job, wait)

    def use_suggestion(self):
        """Move the slider to the range test's suggestion."""
        if self.range_result is not None:
            lo, hi = 10 ** self.lr_slider.min, 10 ** self.lr_slider.max
            self.lr_slider.value = min(max(self.range_result.suggestion, lo), hi)

    def reset(self):
        """New initial weights (the next seed); forget every run and the range test."""
        if self.running:
            self.stop()
            self.wait()
        self.seed += 1
        self.runs.clear()
        self.range_result = None
        self.use_button.disabled = True
        self.suggestion_label.value = ""
        self.progress.value = 0
        self.model = self._build_model(self.settings())
        self._say(f"new initial weights (seed {self.seed}); runs cleared")
        self._redraw()

    def _set_busy(self, busy):
        super()._set_busy(busy)
        self.use_button.disabled = busy or self.range_result is None

    # ------------------------------------------------------------------ output
    def table(self):
        """Every run's summary, one per line."""
        print("\n".join(run.summary() for run in self.runs) or "no runs yet")

    def figure(self):
        """The lab's picture as a matplotlib Figure (not managed by pyplot): training loss of
        every run (earlier runs faded), the per-epoch metric, and the range test."""
        from matplotlib.figure import Figure

        from ..viz import draw_lr_range_test
        fig = Figure(figsize=(13, 4.2), dpi=80)
        loss_ax, metric_ax, range_ax = fig.subplots(1, 3)
        self._draw_losses(loss_ax)
        self._draw_metric(metric_ax)
        draw_lr_range_test(range_ax, self.range_result, current_lr=float(self.lr_slider.value),
                           lr_range=(10 ** self.lr_slider.min, 10 ** self.lr_slider.max))
        if loss_ax.get_legend_handles_labels()[0]:  # one legend for the runs, under the panels
            fig.legend(*loss_ax.get_legend_handles_labels(), loc="lower center", ncol=4,
                       fontsize=9, frameon=False, columnspacing=1.5)
        fig.subplots_adjust(left=0.065, right=0.99, bottom=0.27, top=0.93, wspace=0.25)
        return fig

    def _shown_runs(self):
        """The runs the plot draws: the latest ``RUNS_SHOWN`` (all of them are in ``lab.runs``)."""
        return [run for run in self.runs[-RUNS_SHOWN:] if run.history]

    def _run_style(self, run):
        from ..viz import CLASS_COLORS
        latest = run is self.runs[-1]
        return {"color": CLASS_COLORS[(run.number - 1) % len(CLASS_COLORS)],
                "alpha": 1.0 if latest else 0.4, "linewidth": 2.0 if latest else 1.2}

    def _draw_losses(self, ax):
        """Each shown run's smoothed loss; x where a run diverged, a dot where the slider moved."""
        from ..viz import placeholder
        top, runs = 0.0, self._shown_runs()
        for run in runs:
            curve = lr_finder.ema(finite_prefix(run.history["step_loss"]), LOSS_CURVE_SMOOTHING)
            if not len(curve):
                continue
            style = self._run_style(run)
            ax.plot(np.arange(1, len(curve) + 1), curve, label=run.label, **style)
            moves = [step for step, _ in run.lr_changes if step <= len(curve)]
            ax.plot(moves, curve[np.array(moves, dtype=int) - 1], "o", color=style["color"],
                    markersize=5)
            if run.diverged:
                ax.plot(len(curve), curve[-1], "x", color=style["color"], markersize=9)
            top = max(top, 1.5 * curve[0])
        if top == 0:
            return placeholder(ax, "press Train")
        ax.set_yscale("log")
        ax.set_ylim(top=top)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (smoothed)")
        shown = f"last {len(runs)} of {len(self.runs)} runs" if len(runs) < len(self.runs) else \
            "every run"
        ax.set_title(f"loss of {shown} (earlier runs faded)")

    def _draw_metric(self, ax):
        from matplotlib.ticker import MaxNLocator

        from ..viz import placeholder
        key = "val_accuracy" if self.validation is not None else "accuracy"
        if self.y.dtype.kind not in "iu":
            key = "val_loss" if self.validation is not None else "loss"
        for run in self._shown_runs():
            values = run.history.get(key) or []
            if values:
                ax.plot(range(1, len(values) + 1), values, "o-", **self._run_style(run))
        name = key.replace("_", " ")
        if ax.lines:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # 1, 2, 3, not 1.2
        else:
            placeholder(ax, f"{name}\nappears after the first epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(f"{name} per epoch")
