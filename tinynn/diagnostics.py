"""Diagnostics: the tests a network should pass before you trust its training curves.

A network that trains badly rarely crashes; it just learns less than it should. These tools
turn the usual suspects into a verdict with the expected and the actual number:

    tn.initial_loss_check(model, x, y)     untrained classifier: loss ≈ ln C (C classes)
    tn.overfit_batch(model, x[:32], y[:32])  can the pipeline memorise one small batch?
    tn.gradcheck_net(net, loss, x, y)      the whole net's backward against finite differences
    tn.batch_dependency(net, x, i)         does sample i's output depend on the OTHER samples?
    tn.activation_stats(net, x)            per layer: mean, std, fraction of dead units
    tn.dead_fraction(h)                    units that are 0 for every sample of a batch
    tn.LayerStats(x_probe)                 a fit callback recording those, the parameter
                                           gradients and the update ratio ‖Δθ‖/‖θ‖ per step
                                           (with bins=..., histograms of both over training)
    tn.activation_histograms(net, x, bins) per layer: how many of its outputs fall in each bin

Each check returns a small report: ``.ok`` (True/False), the numbers, and a one-paragraph
``verdict`` (its ``repr``, so a report on a cell's last line prints it). None of them changes
the model it is given: the two that train or perturb work on a deep copy, and ``LayerStats``
only reads (it runs an extra *inference* forward on its own probe batch, which in tinynn
leaves no trace and draws no random numbers).
"""
import copy
import math

import numpy as np

from . import random as tn_random
from .callbacks import Callback
from .checks import check_int
from .errors import ConfigError
from .gradcheck import numerical_gradient, relative_error
from .losses import SigmoidCrossEntropy, SoftmaxCrossEntropy
from .metrics import accuracy
from .net import Net, join_path, leaf_layers
from .sequence import Residual


class Report:
    """A diagnostic's result: ``ok``, the numbers as attributes, and ``verdict`` in words."""

    def __init__(self, name, ok, verdict, **numbers):
        self.name, self.ok, self.verdict = name, bool(ok), verdict
        self.__dict__.update(numbers)

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return f"{self.name}: {'OK' if self.ok else 'PROBLEM'} — {self.verdict}"


def _net_and_loss(model, loss):
    """(net, loss) from a Model, or from a Net and ``loss=``."""
    net = getattr(model, "net", model)
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None or not hasattr(net, "layers"):
        raise ConfigError("diagnostics: pass a tn.Model, or a Net together with loss=...")
    return net, loss


def _as_batch(net, x):
    """``x`` in the dtype of the net's parameters; token ids (a net that starts with an
    Embedding) stay integers."""
    if getattr(net, "takes_ids", False):
        return np.asarray(x)
    params = net.params
    dtype = params[0].dtype if params else np.float32
    return np.asarray(x, dtype=dtype)


# ================================================================ the initial loss
def expected_initial_loss(loss, n_outputs):
    """The loss of a classifier that knows nothing: −ln(1/C) = ln C for softmax cross-entropy
    over C classes, ln 2 for sigmoid cross-entropy. None for other losses (no such rule)."""
    if isinstance(loss, SoftmaxCrossEntropy):
        return math.log(n_outputs)
    if isinstance(loss, SigmoidCrossEntropy):
        return math.log(2.0)
    return None


def initial_loss_check(model, x, y, loss=None, tolerance=0.5):
    """Is the loss of an *untrained* classifier near ln C? An untrained net should be unsure:
    every class about equally likely, probability 1/C each, loss −ln(1/C) = ln C. Much larger
    means the initial logits are too large (unscaled inputs, a bad initialisation); much
    smaller means the net knows the answer before training (a leak) or the loss is wrong.
    ``tolerance`` is the allowed absolute difference."""
    net, loss = _net_and_loss(model, loss)
    with np.errstate(all="ignore"):
        pred = net.forward(_as_batch(net, x), training=False)
        value = float(loss(pred, y)[0])
    expected = expected_initial_loss(loss, pred.shape[-1] if pred.ndim >= 2 else 1)
    if expected is None:
        raise ConfigError(f"initial_loss_check: no expected initial value for {loss!r}; it is "
                          "defined for SoftmaxCrossEntropy (ln C) and SigmoidCrossEntropy (ln 2)")
    classes = pred.shape[-1] if isinstance(loss, SoftmaxCrossEntropy) else 2
    where = f"ln {classes} = {expected:.3f} (chance level for {classes} classes)"
    if not math.isfinite(value):
        ok, verdict = False, (f"the initial loss is {value}, expected about {where}: the "
                              "forward pass overflows — look at the input scale and the initialisation")
    elif abs(value - expected) <= tolerance:
        ok, verdict = True, f"initial loss {value:.3f}, expected about {where}"
    elif value > expected:
        ok, verdict = False, (f"initial loss {value:.3f} is far above {where}: the untrained net "
                              "is confidently wrong, so its logits are too large — are the inputs "
                              "scaled (e.g. to [0, 1])? Is the initialisation too large?")
    else:
        ok, verdict = False, (f"initial loss {value:.3f} is far below {where}: an untrained net "
                              "cannot know the answers — is the net already trained, do the "
                              "inputs contain the labels, or is the loss computed wrongly?")
    return Report("initial loss check", ok, verdict, loss=value, expected=expected,
                  tolerance=tolerance)


# ================================================================ overfit one batch
def overfit_batch(model, x, y, steps=200, target_loss=0.05):
    """Train a deep copy of ``model`` (its net, loss and optimizer, with the optimizer's
    momenta and step count) on the one batch (x, y) for ``steps`` steps; the model itself is
    not changed. A healthy pipeline memorises a small batch: the loss falls near 0 (below
    ``target_loss``) and, for a classifier, every sample ends up classified correctly. If it cannot, the fault is in the net, the loss or the
    optimizer — not in the data or the amount of training. Report: ``losses`` (every step),
    ``loss`` (the final one, on the batch), ``accuracy`` (None for a regression)."""
    if not hasattr(model, "train_step"):
        raise ConfigError("overfit_batch: pass a tn.Model (net, loss and optimizer)")
    steps = check_int(steps, "steps", "overfit_batch")
    trial = copy.deepcopy(model)
    losses = []
    # The copy's dropout draws from a copy of the generator: the caller's stream is untouched.
    with tn_random.fork(), np.errstate(all="ignore"):
        for _ in range(steps):
            losses.append(float(trial.train_step(x, y)))
            if not math.isfinite(losses[-1]):
                break
        scores = trial.evaluate(x, y)
    final, acc = float(scores["loss"]), scores.get("accuracy")
    reached = math.isfinite(final) and final <= target_loss
    perfect = acc is None or acc == 1.0
    got = f"loss {losses[0]:.3g} → {final:.3g} after {len(losses)} steps on {len(x)} samples"
    if acc is not None:
        got += f", accuracy {acc:.0%}"
    if reached and perfect:
        verdict = f"{got}: the pipeline can learn (it memorised the batch)"
    elif not math.isfinite(final):
        verdict = f"{got}: training on one batch diverged — the step size is too large"
    else:
        verdict = (f"{got}, expected a loss below {target_loss:g}"
                   + (" and 100% accuracy" if acc is not None else "")
                   + ": even one batch cannot be memorised, so the net, the loss or the "
                     "optimizer is broken (or the step size is far off)")
    return Report("overfit one batch", reached and perfect, verdict, loss=final, accuracy=acc,
                  losses=losses, steps=len(losses))


# ================================================================ the gradient check of a net
def float64_copy(net):
    """A deep copy of ``net`` whose parameters, gradients and state are float64."""
    net64 = copy.deepcopy(net)
    for _, layer in leaf_layers(net64):
        for store in ("params", "grads", "state"):
            arrays = getattr(layer, store, None)
            if arrays:
                setattr(layer, store, {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
        if getattr(layer, "dtype", None) is not None and hasattr(layer, "build"):
            layer.dtype = np.dtype(np.float64)
    return net64


def gradcheck_net(net, loss, x, y, h=1e-6, samples=None, tolerance=1e-6, seed=0):
    """Check the whole net's backward: for every parameter, the analytical gradient of
    ``loss(net(x), y)`` from ``net.backward`` against central differences
    (f(θ + h) − f(θ − h)) / 2h, in float64 on a deep copy (the net is not changed).

    ``samples=k`` checks k randomly chosen entries of each parameter instead of all (a big
    layer has many). Report: ``errors`` = {"<layer index>.<name>": max relative error}, ok when
    every error is below ``tolerance``; ``worst`` names the largest."""
    net64 = float64_copy(net)
    x = np.asarray(x) if getattr(net64, "takes_ids", False) else np.array(x, dtype=np.float64)

    def objective():
        # The same dropout masks at every evaluation: each forward runs on a copy of the
        # caller's generator, which is left as it was found.
        with tn_random.fork():
            return loss(net64.forward(x, training=True), y)

    value, grad = objective()
    net64.backward(grad)
    errors = _parameter_errors(net64, lambda: objective()[0], h, samples,
                               np.random.default_rng(seed))
    worst = max(errors, key=errors.get) if errors else None
    ok = all(e <= tolerance for e in errors.values())
    if ok:
        verdict = (f"all {len(errors)} parameters match finite differences "
                   f"(max relative error {errors[worst]:.1e} for {worst})" if errors
                   else "the net has no parameters")
    else:
        bad = [k for k, e in errors.items() if e > tolerance]
        where = worst.rsplit(".", 1)[0]
        verdict = (f"the gradients of {', '.join(bad)} do not match finite differences "
                   f"(worst {worst}: relative error {errors[worst]:.2g}, tolerance {tolerance:g}): "
                   f"the backward of layer {where} ({type(dict(leaf_layers(net64))[where]).__name__}) is wrong")
    return Report("gradient check of the net", ok, verdict, errors=errors, worst=worst,
                  loss=float(value))


def _parameter_errors(net, f, h, samples, picker):
    """``{"<layer index>.<name>": relative error}`` of each parameter's gradient in ``net`` (from
    the backward just run) against central differences of ``f``, on ``samples`` entries chosen
    by ``picker`` (all entries when None)."""
    errors = {}
    for where, layer in leaf_layers(net):
        for name, param in layer.params.items():
            analytic = np.array(layer.grads[name], dtype=np.float64)
            if analytic.size != param.size:
                errors[f"{where}.{name}"] = math.inf  # a gradient of the wrong shape
                continue
            chosen = (np.arange(param.size) if samples is None or samples >= param.size
                      else np.sort(picker.choice(param.size, samples, replace=False)))
            numeric = numerical_gradient(f, param, h, indices=chosen)
            errors[f"{where}.{name}"] = relative_error(analytic.reshape(-1)[chosen],
                                                   numeric.reshape(-1)[chosen])
    return errors


# ================================================================ the batch dependency
def batch_dependency(net, x, i=0):
    """Karpathy's check that a net keeps the samples of a batch apart ("use backprop to chart
    dependencies"): the gradient of the sum of output row ``i``, after a *training* forward of
    the whole batch ``x``, with respect to every row of ``x`` (an array of ``x``'s shape).

    Row i says how sample i's output depends on its own input. Every other row must be exactly
    0 for a net that treats each sample on its own (Dense, ReLU, Dropout, Conv2D): a non-zero
    row j means sample j's input changes sample i's output — BatchNorm in training mode (by
    design), or a reshape or transpose that mixes the batch (a bug). Runs in float64 on a deep
    copy, with the caller's random generator left where it was: the net, its BatchNorm running
    statistics and the notebook's random numbers do not change."""
    net64 = float64_copy(net)
    x = np.array(x, dtype=np.float64)
    with tn_random.fork():
        out = net64.forward(x, training=True)
    seed = np.zeros_like(out)
    seed[i] = 1.0
    return net64.backward(seed)


# ================================================================ activations and updates
def dead_fraction(h):
    """The fraction of units (features: every axis but the batch axis) whose value is exactly 0
    for every sample of the batch ``h``. After a ReLU such a unit passes no gradient back for
    any of these inputs, so (on this data) nothing it feeds on can change."""
    flat = np.asarray(h).reshape(len(h), -1)
    return float(np.mean(np.all(flat == 0, axis=0)))


def activation_stats(net, x):
    """Per layer, the statistics of its output on the batch ``x`` (an inference forward, which
    changes nothing): ``{"layer": "1 ReLU", "mean", "std", "dead"}``, where ``dead`` is the
    fraction of units (output features) that are exactly 0 for *every* sample — after a ReLU,
    a unit that receives no gradient from any of these inputs."""
    rows = []
    with np.errstate(all="ignore"):
        for name, _, h in _layer_outputs(net, _as_batch(net, x)):
            flat = h.reshape(len(h), -1)
            rows.append({"layer": name,
                         "mean": float(np.mean(flat, dtype=np.float64)),
                         "std": float(np.std(flat, dtype=np.float64)),
                         "dead": dead_fraction(flat)})
    return rows


def bin_counts(values, bins):
    """How many of ``values`` fall in each bin of the edges ``bins`` (ascending, len(bins) − 1
    bins); values beyond the first or last edge are counted in the first or last bin, so the
    counts always add up to ``values.size`` (a tanh unit at exactly ±1 lands in the end bin)."""
    edges = np.asarray(bins, dtype=np.float64)
    flat = np.asarray(values, dtype=np.float64).ravel()
    flat = np.clip(flat[~np.isnan(flat)], edges[0], edges[-1])
    return np.histogram(flat, edges)[0]


def activation_histograms(net, x, bins):
    """Per layer, the histogram of its output on the batch ``x`` (an inference forward, which
    changes nothing): ``{"layer": "1 Tanh", "counts": counts per bin of the edges bins}``.
    Stacked over training steps, these are fast.ai's "colorful dimension": a tanh layer whose
    counts pile up in the end bins is saturated, a ReLU layer with everything in the 0 bin is
    dead."""
    with np.errstate(all="ignore"):
        return [{"layer": name, "counts": bin_counts(h, bins)}
                for name, _, h in _layer_outputs(net, _as_batch(net, x))]


def _log_grad_counts(layer, bins):
    """Histogram of log10 |g| over every gradient entry of ``layer``'s parameters (a zero
    gradient counts in the lowest bin)."""
    g = np.concatenate([np.abs(np.asarray(layer.grads[name], dtype=np.float64)).ravel()
                        for name in layer.params])
    with np.errstate(divide="ignore"):
        return bin_counts(np.log10(g), bins)


def _layer_outputs(layer, h, where=""):
    """(name, layer, output) for every layer a net's inference forward of ``h`` runs through,
    nested ones included, named ``"<path> <type>"`` (``"2.1 MultiHeadAttention"``): each layer
    inside a nested Net, and a Residual after its block (its output, the sum x + block(x))."""
    if isinstance(layer, Net):  # its layers in turn, each fed the one before's output
        found = []
        for step, child in layer.sublayers():
            inside = _layer_outputs(child, h, join_path(where, step))
            h = inside[-1][2] if inside else h
            found += inside
        return found
    if isinstance(layer, Residual):
        inside = _layer_outputs(layer.block, h, where)
        return inside + [(f"{where} Residual", layer, h + (inside[-1][2] if inside else h))]
    return [(f"{where} {type(layer).__name__}", layer, layer.forward(h, training=False))]


def _norm(arrays):
    return math.sqrt(sum(float(np.vdot(a, a)) for a in arrays))


def _edges(bins, what):
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise ConfigError(f"LayerStats: {what} must be ascending bin edges (at least two), "
                          f"got {bins!r}")
    return edges


class LayerStats(Callback):
    """A ``fit`` callback that records, every ``every`` steps, per layer:

    - ``mean``, ``std``, ``dead``: its output on the probe batch ``x_probe`` (see
      ``activation_stats``; an extra inference forward, so training is unchanged);
    - ``grad_std``: the spread of its parameters' latest gradients (layers with parameters);
    - ``update_ratio``: ‖θ_t − θ_{t−1}‖ / ‖θ_{t−1}‖ over its parameters for that step — how
      far one step moved them, relative to their size. About 1e-3 is healthy; 1e-1 means the
      step size is far too large, 1e-6 that the layer hardly learns.

    With ``bins`` (ascending bin edges for the outputs, e.g. ``np.linspace(-1, 1, 41)`` for
    tanh), also:

    - ``hist``: the counts of its outputs on the probe batch per bin (``activation_histograms``);
    - ``grad_hist``: the counts of log10 |gradient| of its parameters per bin of ``grad_bins``
      (default: 10^-10 … 10^0 in 40 bins), None for a layer without parameters.

    ``hist_matrix(layer)`` stacks a layer's record into a (bins, records) array: the image of
    fast.ai's "colorful dimension" (x: step, y: value, colour: count).

    Read-only: every number training computes is bit-for-bit what it is without the callback.
    ``history[key][layer]`` is a list over the recorded ``steps``; ``problems()`` names what
    looks unhealthy in the latest record."""

    def __init__(self, x_probe, every=1, bins=None, grad_bins=None):
        self.x_probe, self.every = x_probe, check_int(every, "every", "LayerStats")
        self.layers, self.steps, self.history = [], [], {}
        self._previous = None
        self.bins = None if bins is None else _edges(bins, "bins")
        self.grad_bins = (None if self.bins is None else
                          _edges(np.linspace(-10, 0, 41) if grad_bins is None else grad_bins,
                                 "grad_bins"))

    def on_train_begin(self, model):
        net = model.net
        self._probe = _as_batch(net, self.x_probe)
        outputs = _layer_outputs(net, self._probe[:1])
        self._owners = [layer for _, layer, _ in outputs]
        if not self.layers:
            self.layers = [name for name, _, _ in outputs]
            keys = ("mean", "std", "dead", "grad_std", "update_ratio")
            keys += () if self.bins is None else ("hist", "grad_hist")
            self.history = {key: [[] for _ in self.layers] for key in keys}
        self._previous = [p.copy() for p in net.params]

    def on_batch_end(self, model, step, logs):
        net = model.net
        if step % self.every == 0:
            self._record(net, step)
        params = net.params
        if len(params) == len(self._previous):
            for old, new in zip(self._previous, params):
                np.copyto(old, new)
        else:  # a layer was rebuilt: start again
            self._previous = [p.copy() for p in params]

    def _record(self, net, step):
        self.steps.append(step)
        for i, row in enumerate(activation_stats(net, self._probe)):
            for key in ("mean", "std", "dead"):
                self.history[key][i].append(row[key])
        k = 0
        for i, layer in enumerate(self._owners):
            n = 0 if isinstance(layer, Residual) else len(layer.params)  # its block's are counted
            if n:
                old, new = self._previous[k:k + n], list(layer.params.values())
                grads = [np.asarray(layer.grads[name], dtype=np.float64).ravel()
                         for name in layer.params]
                size = _norm(old)
                moved = _norm([a - b for a, b in zip(new, old)])
                self.history["update_ratio"][i].append(moved / size if size else math.inf)
                self.history["grad_std"][i].append(float(np.std(np.concatenate(grads))))
            else:
                self.history["update_ratio"][i].append(math.nan)
                self.history["grad_std"][i].append(math.nan)
            if self.bins is not None:
                self.history["grad_hist"][i].append(
                    _log_grad_counts(layer, self.grad_bins) if n else None)
            k += n
        if self.bins is not None:
            for i, row in enumerate(activation_histograms(net, self._probe, self.bins)):
                self.history["hist"][i].append(row["counts"])

    def hist_matrix(self, layer, key="hist"):
        """A layer's histograms over the record as a (bins, records) array of counts (row 0 the
        lowest bin): ``layer`` is its index or name; ``key`` "hist" (outputs) or "grad_hist"
        (log10 |gradient|). None if the layer has no such record (no parameters, no bins)."""
        if key not in self.history:
            return None
        i = self.layers.index(layer) if isinstance(layer, str) else layer
        counts = self.history[key][i]
        if not counts or counts[0] is None:
            return None
        return np.stack(counts, axis=1)

    def latest(self, key):
        """{layer name: the last recorded value of ``key``}."""
        return {name: values[-1] for name, values in zip(self.layers, self.history[key])
                if values}

    def problems(self, dead=0.5, ratio=(1e-5, 1e-2)):
        """What looks unhealthy in the latest record, in words (an empty list when nothing)."""
        found = []
        for name, fraction in self.latest("dead").items():
            if "ReLU" in name and fraction > dead:
                found.append(f"layer {name}: {fraction:.0%} of its units are dead (0 for every "
                             "probe sample)")
        for name, value in self.latest("update_ratio").items():
            if math.isnan(value):
                continue
            if value > ratio[1]:
                found.append(f"layer {name}: update ratio {value:.1e} (healthy about 1e-3): "
                             "the step size is too large")
            elif value < ratio[0]:
                found.append(f"layer {name}: update ratio {value:.1e} (healthy about 1e-3): "
                             "it hardly learns — step size too small, or no gradient")
        return found

    def summary(self):
        """The latest record as a small table (a string)."""
        lines = [f"{'layer':12s} {'mean':>9s} {'std':>9s} {'dead':>6s} {'grad std':>9s} "
                 f"{'update':>8s}"]
        for i, name in enumerate(self.layers):
            h = {key: self.history[key][i][-1] for key in self.history if self.history[key][i]}
            if not h:
                continue
            grad = "" if math.isnan(h["grad_std"]) else f"{h['grad_std']:.2e}"
            ratio = "" if math.isnan(h["update_ratio"]) else f"{h['update_ratio']:.1e}"
            lines.append(f"{name:12s} {h['mean']:9.3g} {h['std']:9.3g} {h['dead']:6.0%} "
                         f"{grad:>9s} {ratio:>8s}")
        return "\n".join(lines)
