"""Pictures of training: live curves, decision boundaries, digits, confusion matrices, histograms.

matplotlib is imported inside the functions that draw, so ``import tinynn.viz`` is instant and
works on a machine without it.

Static plots (``plot_decision_boundary``, ``show_digits``, ``plot_confusion_matrix``,
``plot_weight_histograms``, ``plot_lr_range_test``) draw into ``ax`` when you pass one, else into a
new pyplot figure, and return the figure. In a notebook the figure appears when the cell ends; if
the call is the cell's last line, follow it with ``plt.show()`` (or assign the result) so it is not
shown twice. (A trailing ``;`` works in Jupyter but not under nbval, which shows the result anyway.)

Live plots are ``Model.fit`` callbacks. They draw one figure and redraw it *in place* through an
IPython display handle::

    handle = display(fig, display_id=True)   # once, when training starts
    handle.update(fig)                        # every few steps: the same output is replaced

so the notebook shows an animation while the cell runs and keeps one final, static picture
afterwards (and nbval sees exactly one output). Outside a Jupyter kernel they draw nothing on screen;
the figure is still kept in ``.figure`` so a script can save it.
"""
import math
import time

import numpy as np

from ..functional import sigmoid, softmax
from ..metrics import as_labels, predicted_classes
from .. import Callback

CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _pyplot():
    import matplotlib.pyplot as plt  # lazy: the core never needs matplotlib
    return plt


def placeholder(ax, text):
    """Write ``text`` in grey across an axes that has no data yet, and hide its ticks: an empty
    axes would otherwise show matplotlib's default ranges (0 … 1, or ±0.05), which mean nothing."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.45",
            fontsize=10)


def _new_axes(ax, figsize):
    """``ax`` and its figure, or a fresh pyplot figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = _pyplot().subplots(figsize=figsize)
    return fig, ax


# ============================================================================ model outputs
def _predict(model, x):
    """Outputs of a Model, a Net or any function of a batch, for a float batch ``x``."""
    if hasattr(model, "predict"):
        return model.predict(x)
    if hasattr(model, "forward"):
        params = getattr(model, "params", None)
        dtype = params[0].dtype if params else np.float32
        return model.forward(np.asarray(x, dtype=dtype), training=False)
    return np.asarray(model(x))


def class_probabilities(outputs):
    """(n, classes) probabilities from network outputs: softmax over several logits, or the
    sigmoid of a single logit as the probability of class 1."""
    z = np.asarray(outputs, dtype=np.float64)
    if z.ndim == 1 or z.shape[1] == 1:
        p = sigmoid(z.reshape(-1))
        return np.column_stack([1.0 - p, p])
    return softmax(z, axis=1)


def _grid(x, resolution, padding):
    lo, hi = x.min(axis=0) - padding, x.max(axis=0) + padding
    xs, ys = np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()]).astype(np.float32), (lo[0], hi[0], lo[1], hi[1])


def draw_decision_boundary(ax, model, x, y, resolution=100, padding=0.3):
    """Draw on ``ax``: every point of the plane coloured by the predicted class (paler where the
    model is unsure), thin lines where the predicted class changes, and the data on top."""
    from matplotlib.colors import to_rgb
    x, labels = np.asarray(x), as_labels(y)
    points, extent = _grid(x, resolution, padding)
    probs = class_probabilities(_predict(model, points))
    n_classes = max(probs.shape[1], int(labels.max()) + 1)
    palette = np.array([to_rgb(CLASS_COLORS[c % len(CLASS_COLORS)]) for c in range(n_classes)])
    colours = probs @ palette[:probs.shape[1]]
    confidence = probs.max(axis=1, keepdims=True)
    background = 1.0 - 0.55 * confidence * (1.0 - colours)  # mix with white: sure = strong
    shape = (resolution, resolution)
    ax.imshow(background.reshape(*shape, 3), origin="lower", extent=extent, aspect="auto",
              interpolation="bilinear")
    classes = probs.argmax(axis=1).reshape(shape)
    if len(np.unique(classes)) > 1:
        ax.contour(*np.meshgrid(np.linspace(*extent[:2], resolution),
                                np.linspace(*extent[2:], resolution)),
                   classes, levels=np.arange(n_classes) + 0.5, colors="k", linewidths=0.6)
    for c in range(n_classes):
        pick = labels == c
        ax.scatter(x[pick, 0], x[pick, 1], s=12, color=CLASS_COLORS[c % len(CLASS_COLORS)],
                   edgecolors="white", linewidths=0.4, label=f"class {c}")
    ax.set_xlim(*extent[:2])
    ax.set_ylim(*extent[2:])
    ax.set_xlabel("x₁")
    ax.set_ylabel("x₂")


def plot_decision_boundary(model, x, y, ax=None, resolution=200, padding=0.3, title=None):
    """The decision regions of a classifier on 2-D data ``x`` with labels ``y``.

    ``model`` is a tinynn Model, a Net, or any function mapping a (n, 2) batch to outputs
    (logits). Returns the figure."""
    fig, ax = _new_axes(ax, (5, 4.5))
    draw_decision_boundary(ax, model, x, y, resolution, padding)
    if title is None:
        title = f"decision boundary · accuracy {np.mean(_predicted(model, x) == as_labels(y)):.3f}"
    ax.set_title(title)
    return fig


def _predicted(model, x):
    return class_probabilities(_predict(model, np.asarray(x, dtype=np.float32))).argmax(axis=1)


# ============================================================================ digits
def _image_grid(n, ncols, size):
    """A figure of ``n`` square panels in rows of ``ncols`` (``size`` inches each), every axis
    off; returns (figure, the n panels in reading order)."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = _pyplot().subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.15),
                                   squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def show_digits(images, labels=None, predictions=None, ncols=10, size=1.1):
    """A grid of images (n, 784) or (n, 28, 28), titled with their labels; with ``predictions``
    (class indices or network outputs) each title shows the prediction, in red when it is wrong.
    Returns the figure."""
    images = np.asarray(images)
    n = len(images)
    side = int(round(math.sqrt(images[0].size)))
    images = images.reshape(n, side, side)
    predicted = None if predictions is None else predicted_classes(predictions)
    truth = None if labels is None else as_labels(labels)
    fig, panels = _image_grid(n, ncols, size)
    for i, ax in enumerate(panels):
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=max(1.0, float(images[i].max())))
        if predicted is not None:
            wrong = truth is not None and predicted[i] != truth[i]
            title = f"{predicted[i]} (true {truth[i]})" if wrong else f"{predicted[i]}"
            ax.set_title(title, fontsize=9, color="#d62728" if wrong else "black")
        elif truth is not None:
            ax.set_title(f"{truth[i]}", fontsize=9)
    fig.tight_layout()
    return fig


# ============================================================================ confusion matrix
def draw_matrix(ax, a, title, box=None, cmap="Greys", fmt="{:g}"):
    """Draw a small matrix as coloured cells with its numbers written in them (dark text on
    light cells, white on dark); ``box = (row, col, height, width)`` outlines a block in red."""
    plt = _pyplot()
    image = ax.imshow(a, cmap=cmap, vmin=min(a.min(), 0), vmax=max(a.max(), 1))
    for (r, c), v in np.ndenumerate(a):
        red, green, blue, _ = image.cmap(image.norm(v))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=11,
                color="white" if dark else "black")
    if box is not None:
        r, c, h, w = box
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), w, h, fill=False, edgecolor="tab:red", lw=3))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return ax


def plot_confusion_matrix(matrix, ax=None, class_names=None, normalize=False, cmap="Blues"):
    """counts[i, j] = samples of true class i predicted as j, as a heat map with the numbers
    written in. ``normalize=True`` shows each row as fractions (recall per class). Returns the
    figure."""
    counts = np.asarray(matrix)
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    n = len(counts)
    names = [str(c) for c in (class_names if class_names is not None else range(n))]
    fig, ax = _new_axes(ax, (0.5 * n + 2, 0.5 * n + 1.6))
    ax.imshow(values, cmap=cmap)
    threshold = values.max() / 2 if values.size else 0
    for i in range(n):
        for j in range(n):
            text = f"{values[i, j]:.2f}" if normalize else f"{counts[i, j]:d}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if values[i, j] > threshold else "black")
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    correct = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(f"confusion matrix · accuracy {correct:.3f}")
    return fig


# ============================================================================ histograms
def plot_weight_histograms(net, bins=40):
    """One row per layer with parameters: the distribution of its parameters (left) and of their
    latest gradients (right). Healthy nets keep both spread out; a spike at 0 means dead units or
    vanishing gradients, ever wider tails mean exploding ones. Returns the figure."""
    layers = [(i, layer) for i, layer in enumerate(getattr(net, "net", net).layers) if layer.params]
    if not layers:
        raise ValueError("plot_weight_histograms: the net has no parameters yet (lazy layers are "
                         "built on the first forward); train or predict once first")
    fig, axes = _pyplot().subplots(len(layers), 2, figsize=(9, 2.2 * len(layers)), squeeze=False)
    for row, (i, layer) in zip(axes, layers):
        for ax, source, what in ((row[0], layer.params, "parameters"),
                                 (row[1], layer.grads, "gradients")):
            values = np.concatenate([np.ravel(v) for v in source.values()]).astype(np.float64)
            values = values[np.isfinite(values)]
            ax.hist(values, bins=bins, color="#1f77b4" if what == "parameters" else "#ff7f0e")
            ax.set_title(f"layer {i} {type(layer).__name__} {what} · std {values.std():.2g}",
                         fontsize=9)
            ax.tick_params(labelsize=8)
    axes[-1][0].set_xlabel("value")
    axes[-1][1].set_xlabel("value")
    fig.tight_layout()
    return fig


# ============================================================================ LR range test
def draw_lr_range_test(ax, result, current_lr=None, lr_range=None):
    """Loss against learning rate (log axis) with the suggested rate marked, and the slider's
    rate ``current_lr`` as a red line. Before any test (``result`` None) the axis spans
    ``lr_range`` = (lowest, highest) rate the test would sweep, with a note to run it."""
    if result is None:
        placeholder(ax, "press LR range test\nto sweep the learning rate")
    else:
        ax.plot(result.lrs, result.losses, color="#1f77b4", label="smoothed loss")
        ax.axvline(result.suggestion, color="#2ca02c", linestyle="--",
                   label=f"suggested {result.suggestion:.1e}")
        ax.axvline(result.min_loss_lr, color="0.6", linestyle=":",
                   label=f"lowest loss {result.min_loss_lr:.1e}")
        finite = np.asarray(result.losses)[np.isfinite(result.losses)]
        if len(finite):
            top = min(finite.max(), 2.5 * finite[0] if finite[0] > 0 else finite.max())
            ax.set_ylim(finite.min() - 0.05 * abs(finite.min()), top * 1.05)
    if current_lr is not None:
        ax.axvline(current_lr, color="#d62728", linewidth=1.2, label=f"slider {current_lr:.1e}")
    ax.set_xscale("log")  # after placeholder(): a new scale brings its ticks back
    if result is None and lr_range is not None:
        ax.set_xlim(*lr_range)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("learning-rate range test")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=9, loc="upper left")


def plot_lr_range_test(result, ax=None):
    """The curve of ``tinynn.widgets.lr_range_test``: loss while the learning rate grows
    exponentially, with the suggested rate. Returns the figure."""
    fig, ax = _new_axes(ax, (5.5, 3.6))
    draw_lr_range_test(ax, result)
    return fig


# ============================================================================ live plots
def _display_handle(fig):
    """Show ``fig`` in the running Jupyter kernel and return its display handle, or None when
    there is no kernel (a script, a terminal, a test)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None
    return display(fig, display_id=True)


class _LiveFigure(Callback):
    """A figure redrawn in place while ``Model.fit`` runs.

    It redraws every ``every`` steps, but at most once per ``min_interval`` seconds and never
    spending more than about a fifth of the time on drawing (a PNG costs tens of milliseconds:
    fast steps would otherwise mostly draw), and always at the end of each epoch and of training.
    ``min_interval=0`` draws every ``every`` steps, whatever it costs."""

    figsize = (9, 3.4)

    def __init__(self, every=10, min_interval=0.25):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"{type(self).__name__}: every must be a positive integer, got {every!r}")
        _pyplot()  # fail now, with matplotlib's own message, if it is not installed
        self.every, self.min_interval = every, min_interval
        self.figure = self.handle = None
        self.updates, self.epoch, self.finished = 0, 1, False

    def on_train_begin(self, model):
        plt = _pyplot()
        self.figure = plt.figure(figsize=self.figsize)
        plt.close(self.figure)  # pyplot forgets it: only our display handle ever shows it
        self.setup(self.figure)
        self.epoch_steps, self.epoch, self.finished = [], 1, False
        self._last, self._gap = time.monotonic(), self.min_interval
        self.draw(model)
        self.handle = _display_handle(self.figure)

    def on_epoch_begin(self, model, epoch):
        self.epoch = epoch + 1

    def on_batch_end(self, model, step, logs):
        if step % self.every == 0 and time.monotonic() - self._last >= self._gap:
            self._update(model)

    def on_epoch_end(self, model, epoch, logs):
        self.epoch_steps.append(len(model.history["step_loss"]))
        self._update(model)

    def on_train_end(self, model, history):
        self.finished = True
        self._update(model)

    def _update(self, model):
        start = time.monotonic()
        for ax in self.figure.axes:
            ax.clear()
        self.draw(model)
        if self.handle is not None:
            self.handle.update(self.figure)
        self.updates += 1
        self._last = time.monotonic()
        if self.min_interval:
            self._gap = max(self.min_interval, 4 * (self._last - start))

    def setup(self, fig):
        raise NotImplementedError

    def draw(self, model):
        raise NotImplementedError


def _finite(values):
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


class LivePlot(_LiveFigure):
    """Live training curves for ``Model.fit``::

        model.fit(x, y, epochs=5, validation=(xv, yv), callbacks=[LivePlot(("loss", "accuracy"))])

    One panel per metric. The loss panel shows the loss of every step (pale) and each epoch's
    mean training loss and validation loss against the step number; other metrics (accuracy)
    are per epoch, training and validation. ``log_scale=True`` puts the loss on a log axis,
    where the late, slow progress stays visible."""

    def __init__(self, metrics=("loss",), every=10, log_scale=False, min_interval=0.25):
        super().__init__(every, min_interval)
        self.metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
        self.log_scale = log_scale
        self.figsize = (4.6 * len(self.metrics) + 0.6, 3.4)

    def setup(self, fig):
        fig.subplots(1, len(self.metrics), squeeze=False)
        fig.subplots_adjust(left=0.1 / len(self.metrics), right=0.98, bottom=0.15, top=0.86,
                            wspace=0.25)

    def draw(self, model):
        history = model.history
        for ax, name in zip(self.figure.axes, self.metrics):
            if name == "loss":
                self._draw_loss(ax, history)
            else:
                self._draw_epoch_metric(ax, history, name)
        self.figure.suptitle(self._status(history), fontsize=10)

    def _status(self, history):
        """The title: the epoch in progress while training, then how training ended (a run
        stopped inside an epoch did not finish it, so it never says 'done')."""
        steps = len(history["step_loss"])
        where = f"step {steps}" + (f" · loss {history['step_loss'][-1]:.4f}" if steps else "")
        if history.get("stopped"):
            return f"{where} · {history['stopped']}"
        if self.finished:
            epochs = len(self.epoch_steps)
            return f"{epochs} epoch{'s' if epochs != 1 else ''} done · {where}"
        return f"epoch {self.epoch} · {where}"

    def _draw_loss(self, ax, history):
        if not history["step_loss"]:
            return placeholder(ax, "the loss appears after the first step")
        steps = np.arange(1, len(history["step_loss"]) + 1)
        ax.plot(steps, _finite(history["step_loss"]), color="#1f77b4", alpha=0.35, linewidth=0.8,
                label="train (each step)")
        ends = self.epoch_steps[:len(history["loss"])]
        if ends:
            ax.plot(ends, history["loss"][:len(ends)], "o-", color="#1f77b4", label="train (epoch)")
        if history.get("val_loss"):
            ax.plot(ends, history["val_loss"][:len(ends)], "s-", color="#ff7f0e", label="validation")
        if self.log_scale:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8, loc="upper right")

    def _draw_epoch_metric(self, ax, history, name):
        if not (history.get(name) or history.get(f"val_{name}")):
            return placeholder(ax, f"{name}\nappears after the first epoch")
        for key, style, colour, label in ((name, "o-", "#1f77b4", "train"),
                                          (f"val_{name}", "s-", "#ff7f0e", "validation")):
            values = history.get(key) or []
            if values:
                ax.plot(range(1, len(values) + 1), values, style, color=colour, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right")


class LiveDecisionBoundary(_LiveFigure):
    """Watch a classifier on 2-D data learn: its decision regions (left) and the loss (right),
    redrawn in place while ``Model.fit`` runs::

        model.fit(x, y, epochs=200, callbacks=[LiveDecisionBoundary(x, y, every=25)])
    """

    figsize = (9, 4)

    def __init__(self, x, y, every=25, min_interval=0.25, resolution=80):
        super().__init__(every, min_interval)
        self.x, self.y, self.resolution = np.asarray(x), np.asarray(y), resolution

    def setup(self, fig):
        fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.1, 1]})
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13, top=0.91, wspace=0.22)

    def draw(self, model):
        boundary, loss = self.figure.axes
        draw_decision_boundary(boundary, model, self.x, self.y, self.resolution)
        accuracy = np.mean(_predicted(model, self.x) == as_labels(self.y))
        boundary.set_title(f"decision regions · accuracy {accuracy:.3f}")
        step_loss = model.history["step_loss"]
        draw_loss_curve(loss, step_loss)
        loss.set_title(f"step {len(step_loss)}")


def draw_loss_curve(ax, step_loss):
    """The training loss of every step, or a placeholder before the first step."""
    if len(step_loss) == 0:
        return placeholder(ax, "the loss appears after the first step")
    ax.plot(np.arange(1, len(step_loss) + 1), _finite(step_loss), color="#1f77b4")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")


# ============================================================================ layer dashboard
LAYER_PANELS = (("std", "activation std", "log"), ("dead", "dead units (fraction)", "linear"),
                ("grad_std", "parameter gradient std", "log"),
                ("update_ratio", "update ratio ‖Δθ‖/‖θ‖", "log"))


def draw_layer_stats(axes, stats):
    """Draw a ``tn.LayerStats`` record on four axes: per layer (one line each, against the step)
    the activation std, the fraction of dead units (ReLU layers), the parameters' gradient
    std and the update ratio, with the healthy band 1e-4 … 1e-2 around 1e-3 shaded."""
    from matplotlib.lines import Line2D
    steps = np.asarray(stats.steps)
    for ax, (key, title, scale) in zip(axes, LAYER_PANELS):
        drawn = 0
        for i, name in enumerate(stats.layers):
            values = _finite(stats.history[key][i]) if stats.history else np.array([])
            if key == "dead" and "ReLU" not in name:
                continue
            if scale == "log":  # a zero (a dead layer's std) has no place on a log axis
                values = np.where(values > 0, values, np.nan)
            if len(values) and np.isfinite(values).any():
                ax.plot(steps[:len(values)], values, color=CLASS_COLORS[i % len(CLASS_COLORS)],
                        linewidth=1.2)
                drawn += 1
        if key == "update_ratio":
            ax.axhspan(1e-4, 1e-2, color="#2ca02c", alpha=0.08)
            ax.axhline(1e-3, color="#2ca02c", linestyle="--", linewidth=0.8)
        if key == "dead":
            ax.set_ylim(-0.03, 1.03)
        if drawn and scale == "log":
            _plain_log_axis(ax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if not drawn:
            placeholder(ax, "nothing recorded yet")
    fig = axes[0].figure  # one legend for the four panels, at the right: a colour per layer
    for legend in list(fig.legends):
        legend.remove()
    fig.legend(handles=[Line2D([], [], color=CLASS_COLORS[i % len(CLASS_COLORS)],
                               label=f"layer {name}") for i, name in enumerate(stats.layers)],
               loc="center right", fontsize=7, frameon=False)


def _plain_log_axis(ax):
    """A log y-axis with plain '1e-03' labels: matplotlib's default mathtext labels cost most of
    a live figure's redraw time."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(numticks=6))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.0e}"))
    ax.yaxis.set_minor_locator(NullLocator())


def plot_layer_stats(stats, title=None):
    """The four panels of ``draw_layer_stats`` for a finished ``tn.LayerStats``; returns the
    figure."""
    fig, axes = _pyplot().subplots(1, 4, figsize=(13, 3.2))
    draw_layer_stats(axes, stats)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    return fig


class LayerDashboard(_LiveFigure):
    """Per-layer health, live, while ``Model.fit`` runs::

        dashboard = LayerDashboard(x_train[:256], every=20)
        model.fit(x, y, epochs=3, callbacks=[dashboard])
        dashboard.stats.problems()      # what looked unhealthy at the end

    It records a ``tn.LayerStats`` on the probe batch every ``record_every`` steps (read-only:
    training is unchanged) and redraws its four panels every ``every`` steps, throttled like
    ``LivePlot``. ``stats`` holds the record."""

    figsize = (13, 3.4)

    def __init__(self, x_probe, every=20, record_every=5, min_interval=0.25):
        super().__init__(every, min_interval)
        from .. import LayerStats
        self.stats = LayerStats(x_probe, every=record_every)

    def on_train_begin(self, model):
        self.stats.on_train_begin(model)
        super().on_train_begin(model)

    def on_batch_end(self, model, step, logs):
        self.stats.on_batch_end(model, step, logs)
        super().on_batch_end(model, step, logs)

    def setup(self, fig):
        fig.subplots(1, 4)
        fig.subplots_adjust(left=0.05, right=0.895, bottom=0.16, top=0.84, wspace=0.3)

    def draw(self, model):
        draw_layer_stats(self.figure.axes, self.stats)
        steps = len(model.history["step_loss"]) if model.history else 0
        problems = self.stats.problems() if self.stats.steps else []
        status = f"step {steps}" + (f" · {len(problems)} warning(s): {problems[0][:90]}"
                                    if problems else " · no warnings")
        self.figure.suptitle(status, fontsize=9)


# ------------------------------------------------------------------ notebook 14: attention maps
def attention_maps(net, ids):
    """The attention weights (heads, T, T) of every MultiHeadAttention of ``net`` for one
    sequence of ids (T,), in order: a training-mode forward saves them (a GPT has no dropout)."""
    from ..net import leaf_layers
    from ..sequence import MultiHeadAttention
    net.forward(np.asarray(ids)[None], training=True)
    return [layer.saved_tensors[4][0] for _, layer in leaf_layers(net)
            if isinstance(layer, MultiHeadAttention)]


def plot_attention_maps(maps, tokens, size=2.2):
    """One picture per layer (rows) and head (columns): row t of a map is what position t
    (the query) attends to among the tokens s ≤ t (the keys)."""
    plt = _pyplot()
    layers, heads = len(maps), maps[0].shape[0]
    fig, axes = plt.subplots(layers, heads, figsize=(size * heads, size * layers), squeeze=False)
    for i, layer in enumerate(maps):
        for h in range(heads):
            ax = axes[i, h]
            ax.imshow(layer[h], cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks(range(len(tokens)))
            ax.set_xticklabels(tokens, fontsize=7)
            ax.set_yticks(range(len(tokens)))
            ax.set_yticklabels(tokens, fontsize=7)
            ax.set_title(f"layer {i + 1}, head {h + 1}", fontsize=8)
    fig.tight_layout()
    return fig


# ============================================================================ notebook 06: learned weights
def show_weight_images(w, n=None, ncols=10, size=1.1, titles=None):
    """The columns of a first-layer Dense weight ``w`` (pixels, units) as images, one per unit:
    what each unit multiplies the input's pixels by (red: ink there raises the unit's input,
    blue: lowers it; white 0), on a colour scale symmetric around 0 per image. ``n`` units (all
    by default). Returns the figure."""
    w = np.asarray(w, dtype=np.float64)
    n = w.shape[1] if n is None else min(n, w.shape[1])
    side = int(round(math.sqrt(w.shape[0])))
    fig, panels = _image_grid(n, ncols, size)
    for i, ax in enumerate(panels):
        image = w[:, i].reshape(side, side)
        limit = max(float(np.abs(image).max()), 1e-12)
        ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"unit {i}" if titles is None else str(titles[i]), fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- notebook 11: the computational graph
def draw_autograd_graph(root, names, ax=None):
    """Draw the autograd graph of ``root`` (a ``tinynn.autograd.Tensor``): one column per depth,
    each node with its name, operation, value and gradient (``names``: {id(tensor): name}).

    Every use of a node is its own arrow: an input used twice by one operation (``d * d``) gets
    two arrows, bent apart and labelled "use 1", "use 2"; an arrow that skips a column is drawn
    as an arc below the nodes it passes, so it never hides behind them."""
    from ..autograd import topological_order
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3))
    order = topological_order(root)
    depth = {}
    for node in order:                          # parents come first: their depth is known
        depth[id(node)] = max((depth[id(p)] + 1 for p in node.parents), default=0)
    rows, position = {}, {}
    for node in order:
        column = depth[id(node)]
        position[id(node)] = (column, -rows.get(column, 0))
        rows[column] = rows.get(column, 0) + 1
    for node in order:
        parents = list(node.parents)
        for k, parent in enumerate(parents):
            uses = [i for i, p in enumerate(parents) if p is parent]
            (x0, y0), (x1, y1) = position[id(parent)], position[id(node)]
            if len(uses) > 1:                    # the same input used several times
                bend = 0.35 * (uses.index(k) - (len(uses) - 1) / 2) * 2
                style, label = f"arc3,rad={bend}", f"use {uses.index(k) + 1}"
            elif x1 - x0 > 1 and y0 == y1:      # skips a column: an arc below
                style, label = "arc3,rad=0.35", None
            else:
                style, label = "arc3,rad=0", None
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color="0.35", shrinkA=30, shrinkB=30,
                                        connectionstyle=style, lw=1.2))
            if label:
                sign = 1 if uses.index(k) == 0 else -1
                ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.22 * sign, label, ha="center",
                        va="center", fontsize=8, color="0.3")
    for node in order:
        label = (f"{names.get(id(node), '?')}  {node.op}\nvalue {float(node.data):g}\n"
                 f"grad {float(node.grad):g}")
        ax.text(*position[id(node)], label, ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round", facecolor="#e8f0fb" if node.parents else "#fdf2d9"))
    ax.set(xlim=(-0.6, max(depth.values()) + 0.6), ylim=(-1.9, 0.6))
    ax.axis("off")
    return ax


# ---- notebook 13 (language models) ----

def plot_bigram_counts(counts, chars, ax=None, title="bigram counts: row = previous, column = next"):
    """The (V, V) bigram count table as a heat map, each cell labelled with its pair of characters
    and its count (rows: the previous character; columns: the next one)."""
    counts = np.asarray(counts)
    fig, ax = _new_axes(ax, (12, 12))
    ax.imshow(counts, cmap="Blues")
    for i, a in enumerate(chars):
        for j, b in enumerate(chars):
            ax.text(j, i - 0.15, a + b, ha="center", va="center", fontsize=6, color="grey")
            ax.text(j, i + 0.2, str(counts[i, j]), ha="center", va="center", fontsize=5,
                    color="grey")
    ax.set_xticks(range(len(chars)), list(chars))
    ax.set_yticks(range(len(chars)), list(chars))
    ax.set_title(title)
    return fig


def plot_embeddings(table, chars, ax=None, title="character embeddings (first 2 principal axes)"):
    """Each row of an embedding table as its letter at the row's first two principal components
    (PCA of the centred table), vowels in red."""
    table = np.asarray(table, dtype=np.float64)
    centred = table - table.mean(axis=0)
    points = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
    fig, ax = _new_axes(ax, (6, 6))
    ax.scatter(points[:, 0], points[:, 1], s=220, c="#eeeeee")
    for (u, v), c in zip(points, chars):
        ax.text(u, v, c, ha="center", va="center", color="red" if c in "aeiouy" else "black")
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.set_title(title)
    return fig


# ============================================================================ notebook 08 (generalisation)
def plot_loss_runs(runs, title, ax=None):
    """Training loss (dashed) and validation loss (solid) per epoch, one colour per run: ``runs``
    maps a label to a ``fit`` history (its ``"loss"`` and ``"val_loss"``); log scale."""
    fig, ax = _new_axes(ax, (7.5, 3.4))
    for i, (label, history) in enumerate(runs.items()):
        epochs = np.arange(1, len(history["loss"]) + 1)
        ax.plot(epochs, history["val_loss"], color=f"C{i}", label=f"{label}: validation")
        ax.plot(epochs, history["loss"], color=f"C{i}", ls="--", lw=1, label=f"{label}: training")
    ax.set(xlabel="epoch", ylabel="loss", yscale="log", title=title)
    ax.legend(fontsize=7, ncol=2)
    return fig


# notebook 09: one output pixel of a multi-channel convolution
def draw_multichannel_conv(x, w, y, at, f=0):
    """How one output pixel sees all C channels: top row, the C input channels of ``x``
    (H, W, C) with the k×k window at ``at = (row, col)`` outlined, and output map ``f`` of ``y``
    (H_out, W_out, F) with that pixel outlined; bottom row, filter f's C kernel slices
    ``w[:, :, c, f]``. The filter is a k×k×C block: each slice meets its own channel and the C
    window sums add up to one number, y[row, col, f] = b[f] + Σ_c Σ_ij x[row+i, col+j, c]·w[i, j, c, f].
    Returns the figure."""
    plt = _pyplot()
    k, channels, (r, c) = w.shape[0], w.shape[2], at
    fig, axes = plt.subplots(2, channels + 1, figsize=(2.6 * (channels + 1), 5.6))
    for ch in range(channels):
        draw_matrix(axes[0, ch], x[:, :, ch], f"input channel {ch}", box=(r, c, k, k), cmap="gray")
        draw_matrix(axes[1, ch], w[:, :, ch, f], f"filter {f}: slice for channel {ch}", cmap="RdBu_r")
    draw_matrix(axes[0, channels], y[:, :, f], f"output map {f}", box=(r, c, 1, 1), cmap="Oranges")
    axes[1, channels].axis("off")
    axes[1, channels].text(0.5, 0.5, "sum over the\nchannels' windows\n= one output pixel",
                           ha="center", va="center", fontsize=11)
    fig.tight_layout()
    return fig


# ======================================================== notebook 10: BatchNorm with and without
def plot_batchnorm_runs(runs, window=10):
    """Notebook 10's experiment, one row per learning rate: the training loss of the plain net
    and of the BatchNorm net (every step faint, a running mean over ``window`` steps bold; the
    legend gives the mean of the last 50 steps), then for each net the activation std of its
    hidden layers — the ReLUs' outputs on the probe batch, one line per layer, as
    ``tn.LayerStats`` recorded them (one scale for all these panels). ``runs[lr, name] =
    (history, stats)``, name "plain" or "BatchNorm"; returns the figure."""
    lrs = sorted({lr for lr, _ in runs})
    fig, axes = _pyplot().subplots(len(lrs), 3, figsize=(13, 3.3 * len(lrs)), squeeze=False,
                                   sharex=True)
    shades = _pyplot().get_cmap("viridis")
    for row, lr in zip(axes, lrs):
        for i, name in enumerate(("plain", "BatchNorm")):
            history, stats = runs[lr, name]
            loss = np.asarray(history["step_loss"], dtype=float)
            steps = np.arange(1, len(loss) + 1)
            row[0].plot(steps, loss, color=f"C{i}", alpha=0.25, lw=0.8)
            row[0].plot(steps[window - 1:], np.convolve(loss, np.ones(window) / window, "valid"),
                        color=f"C{i}", label=f"{name}: {np.mean(loss[-50:]):.2f} (last 50 steps)")
            hidden = [k for k, layer in enumerate(stats.layers) if "ReLU" in layer]
            for depth, k in enumerate(hidden):
                std = np.asarray(stats.history["std"][k], dtype=float)
                row[1 + i].plot(stats.steps, np.where(std > 0, std, np.nan),
                                color=shades(0.85 * depth / max(len(hidden) - 1, 1)),
                                label=f"hidden layer {depth + 1}")
            row[1 + i].set_title(f"{name}, η = {lr:g}: activation std, per hidden layer",
                                 fontsize=9)
        row[0].set_title(f"η = {lr:g}: training loss", fontsize=9)
        row[0].legend(fontsize=8)
    drawn = np.concatenate([line.get_ydata() for ax in axes[:, 1:].ravel() for line in ax.lines])
    drawn = drawn[np.isfinite(drawn)]
    from matplotlib.ticker import LogLocator
    for ax in axes[:, 1:].ravel():
        _plain_log_axis(ax)
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter("{x:g}")
        ax.set_ylim(drawn.min() / 1.3, drawn.max() * 1.3)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    axes[0, 2].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ============================================================================ notebook 08: learning curve and λ sweep
def plot_learning_curve(sizes, train_scores, val_scores, ax=None, ylabel="accuracy",
                        title="learning curve: the same net, more data"):
    """Training and validation score against the number of training examples (log x axis), the
    gap between them shaded: a generalisation gap that closes as the data grows."""
    fig, ax = _new_axes(ax, (6.5, 3.4))
    ax.plot(sizes, train_scores, "o-", color="C0", label="training")
    ax.plot(sizes, val_scores, "o-", color="C1", label="validation")
    ax.fill_between(sizes, val_scores, train_scores, color="C3", alpha=0.15, label="the gap")
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.set(xlabel="training examples (log scale)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return fig


def plot_sweep(values, train_losses, val_losses, ax=None, xlabel="weight decay λ",
               title="choosing λ on the validation set", yscale="linear"):
    """Final training and validation loss for each value of a setting, evenly spaced in the
    order given (so a 0 fits beside 1, 3, 10); the best validation value is ringed. A linear y
    axis shows the validation loss's U; ``yscale="log"`` shows the training loss's climb."""
    fig, ax = _new_axes(ax, (6.5, 3.4))
    positions = np.arange(len(values))
    ax.plot(positions, train_losses, "o--", color="C0", label="training")
    ax.plot(positions, val_losses, "o-", color="C1", label="validation")
    best = int(np.argmin(val_losses))
    ax.plot(positions[best], val_losses[best], "o", ms=14, mfc="none", mec="C3",
            label=f"best on validation: {values[best]:g}")
    ax.set_xticks(positions)
    ax.set_xticklabels([f"{v:g}" for v in values])
    ax.set(xlabel=xlabel, ylabel="loss" + (" (log scale)" if yscale == "log" else ""),
           yscale=yscale, title=title)
    ax.legend(fontsize=8)
    return fig


def plot_seed_spread(per_seed, labels=None, title="three seeds"):
    """One panel per measure: each run's value for every seed (dots) and their mean (a bar).
    ``per_seed`` maps a run's name to {measure: array of values, one per seed}."""
    names = list(per_seed)
    measures = list(per_seed[names[0]])
    fig, axes = _pyplot().subplots(1, len(measures), figsize=(3.2 * len(measures), 2.8),
                                   layout="constrained", squeeze=False)
    for ax, measure in zip(axes[0], measures):
        for i, name in enumerate(names):
            values = np.asarray(per_seed[name][measure], dtype=float)
            ax.plot([i - 0.25, i + 0.25], [values.mean()] * 2, color=f"C{i}", lw=2.5)
            ax.plot(np.full(len(values), i), values, "o", color=f"C{i}", ms=5, alpha=0.7)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_title((labels or {}).get(measure, measure), fontsize=10)
    fig.suptitle(title)
    return fig


# ============================================================================ notebook 04: optimizer paths
def draw_surface(ax, surface, paths, title=""):
    """Contour plot of a 2-D surface with {label: path} drawn on top. ``surface`` is a dict with
    the function ``f`` (works on a grid), ``xlim``, ``ylim``, contour ``levels``, ``start`` and
    ``minimum``; a path is an array of points, shape (steps + 1, 2)."""
    xs, ys = np.linspace(*surface["xlim"], 200), np.linspace(*surface["ylim"], 200)
    grid = np.meshgrid(xs, ys)
    ax.contourf(*grid, surface["f"](grid), levels=surface["levels"], cmap="Blues",
                alpha=0.8, extend="both")
    for i, (label, path) in enumerate(paths.items()):
        style = ".-" if len(path) <= 200 else "-"  # dots mark the steps of short paths
        ax.plot(path[:, 0], path[:, 1], style, color=f"C{i + 1}", ms=3, lw=1.2, label=label)
    ax.plot(*surface["start"], "ko", ms=5)
    ax.plot(*surface["minimum"], "k*", ms=12)
    ax.set(xlim=surface["xlim"], ylim=surface["ylim"], title=title)
    if len(paths) > 1:
        ax.legend(loc="lower right", fontsize=8)


def surface_panels(count, width=3.4, height=3.3):
    """A row of ``count`` contour panels sharing both axes, with few enough ticks that labels
    never touch. Returns (figure, axes)."""
    from matplotlib.ticker import MaxNLocator
    fig, axes = _pyplot().subplots(1, count, figsize=(width * count, height), sharex=True,
                                   sharey=True, layout="constrained", squeeze=False)
    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(4, steps=[1, 2, 5, 10], prune="both"))
        ax.set_xlabel("x")
    axes[0, 0].set_ylabel("y")
    return fig, axes[0]


def two_line_title(label):
    """'Momentum lr=0.3 μ=0.9' -> 'Momentum\\nlr=0.3 μ=0.9': titles of narrow panels fit."""
    return label.replace(" ", "\n", 1)


def report_path(label, surface, path):
    """Print one line: a path's final point, final loss, and the first step with loss < 0.001."""
    losses = surface["f"](path.T)
    below = np.flatnonzero(losses < 1e-3)
    reached = f"{below[0]:4d}" if len(below) else "   —"
    x, y = np.round(path[-1], 3) + 0.0  # + 0.0 turns -0.0 into 0.0
    print(f"{label:28s} ends at ({x:7.3f}, {y:6.3f})  loss {losses[-1]:.1e}   "
          f"loss < 0.001 at step {reached}")


def plot_step_losses(curves, window=20, ax=None, title="training loss per step"):
    """Training-loss curves, one per label in ``curves`` ({label: loss per step}), each smoothed
    by a running mean over ``window`` steps (the raw per-batch loss is noisy); log y axis."""
    fig, ax = _new_axes(ax, (8, 3.6))
    kernel = np.ones(window) / window
    for i, (label, losses) in enumerate(curves.items()):
        smooth = np.convolve(np.asarray(losses, dtype=float), kernel, mode="valid")
        ax.plot(np.arange(window, len(losses) + 1), smooth, color=f"C{i + 1}", label=label)
    ax.set(xlabel="step", ylabel=f"loss (mean of {window} steps, log scale)", yscale="log",
           title=title)
    ax.legend(fontsize=8)
    return fig


# ============================================================================ notebook 02: activation histograms over training
def _selected_layers(stats, key, layers):
    """Indices of the layers of ``stats`` with a ``key`` record: all of them, those whose name
    contains ``layers`` (a string such as "Tanh"), or the names/indices in ``layers``."""
    chosen = range(len(stats.layers))
    if isinstance(layers, str):
        chosen = [i for i in chosen if layers in stats.layers[i]]
    elif layers is not None:
        chosen = [stats.layers.index(l) if isinstance(l, str) else l for l in layers]
    return [i for i in chosen if stats.hist_matrix(i, key) is not None]


def draw_layer_histograms(axes, stats, key="hist", layers=None, label=True):
    """Draw, on one axis per layer, a ``tn.LayerStats`` record of histograms (``bins=`` given) as
    an image, fast.ai's "colorful dimension": x the recorded step, y the bin (the output value
    for ``key="hist"``, log10 |gradient| of the layer's parameters for ``"grad_hist"``), colour
    log(1 + count) — dark where no value falls, bright where many do. ``layers``: see
    ``_selected_layers``. Axes left over stay blank."""
    chosen = _selected_layers(stats, key, layers) if stats.steps else []
    edges = stats.bins if key == "hist" else stats.grad_bins
    for ax, i in zip(axes, chosen):
        counts = stats.hist_matrix(i, key)
        steps = np.asarray(stats.steps[:counts.shape[1]], dtype=np.float64)
        gap = steps[1] - steps[0] if len(steps) > 1 else 1.0
        ax.imshow(np.log1p(counts), aspect="auto", origin="lower", cmap="viridis",
                  interpolation="nearest",
                  extent=(steps[0] - gap / 2, steps[-1] + gap / 2, edges[0], edges[-1]))
        ax.set_title(f"layer {stats.layers[i]}", fontsize=9)
        ax.tick_params(labelsize=7)
        if label:
            ax.set_xlabel("step", fontsize=8)
    if label and chosen:
        axes[0].set_ylabel("output value" if key == "hist" else "log10 |gradient|", fontsize=8)
    for ax in list(axes)[len(chosen):]:  # more axes than layers: leave the rest blank
        if stats.steps:
            ax.set_axis_off()
        else:
            placeholder(ax, "nothing recorded yet")


def plot_layer_histograms(runs, key="hist", layers=None, size=(2.3, 1.9)):
    """One row per run, one column per layer: ``runs`` maps a row title to a ``tn.LayerStats``
    recorded with ``bins=``; each panel is ``draw_layer_histograms``'s image. Returns the
    figure."""
    plt = _pyplot()
    columns = max(len(_selected_layers(s, key, layers)) for s in runs.values())
    fig, axes = plt.subplots(len(runs), columns, figsize=(size[0] * columns, size[1] * len(runs)),
                             squeeze=False, sharey=True)
    for row, (title, stats) in zip(axes, runs.items()):
        draw_layer_histograms(row, stats, key, layers, label=row is axes[-1])
        row[0].set_ylabel(f"{title}\n" + ("output value" if key == "hist" else "log10 |grad|"),
                          fontsize=8)
    fig.tight_layout()
    return fig


class LayerHistogramDashboard(LayerDashboard):
    """``LayerDashboard`` with a second row: the histograms of the layers' outputs over training
    (``draw_layer_histograms``; ``layers`` chooses which, e.g. "ReLU") under its four panels::

        dashboard = LayerHistogramDashboard(x_train[:256], bins=np.linspace(-1, 1, 41),
                                            layers="Tanh")
        model.fit(x, y, epochs=3, callbacks=[dashboard])"""

    figsize = (13, 6.2)

    def __init__(self, x_probe, bins, layers=None, every=20, record_every=5, min_interval=0.25):
        super().__init__(x_probe, every, record_every, min_interval)
        from .. import LayerStats
        self.stats = LayerStats(x_probe, every=record_every, bins=bins)
        self.layers = layers

    def setup(self, fig):
        names = self.stats.layers        # known: the record began before the figure is set up
        shown = (sum(self.layers in name for name in names) if isinstance(self.layers, str)
                 else len(names) if self.layers is None else len(self.layers))
        columns = max(4, shown)
        grid = fig.add_gridspec(2, columns)
        for j in range(4):
            fig.add_subplot(grid[0, j * columns // 4:(j + 1) * columns // 4])
        for j in range(columns):
            fig.add_subplot(grid[1, j])
        fig.subplots_adjust(left=0.05, right=0.895, bottom=0.08, top=0.9, wspace=0.35, hspace=0.45)

    def draw(self, model):
        super().draw(model)
        draw_layer_histograms(self.figure.axes[4:], self.stats, "hist", self.layers)
