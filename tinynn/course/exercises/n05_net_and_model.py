"""Notebook 05 (net and model): ``check_model_step`` and ``check_skip_backward``, and the
exercises net_passes (checked by ``check_function``), skip_backward and train_step.

    check_model_step(train_step)   # train_step(net, loss, optimizer, x, y) -> loss

One training step is checked by what it leaves behind: the returned loss and the parameters after
every step of a short run, next to the reference step and to the classic mistakes (no update, the
update before backward, uphill).
"""
import numpy as np

from ...layers import Dense, ReLU, Tanh
from ...losses import SoftmaxCrossEntropy
from ...model import Model
from ...net import Net
from ...optimizers import SGD
from ...sequence import Residual
from .compare import TOLERANCE, _close, _expect, _fmt
from .core import SEED, Failed, NotDone, _name, _run
from .n00_overview import check_function
from .spec import Call, Exercise, visible_defaults


def _reference_train_step(net, loss, optimizer, x, y):
    pred = net.forward(x, training=True)
    value, grad = loss(pred, y)
    net.backward(grad)
    optimizer.step(net.params, net.grads)
    return value


def _step_before_backward(net, loss, optimizer, x, y):
    pred = net.forward(x, training=True)
    value, grad = loss(pred, y)
    optimizer.step(net.params, net.grads)
    net.backward(grad)
    return value


def _no_update(net, loss, optimizer, x, y):
    value, grad = loss(net.forward(x, training=True), y)
    net.backward(grad)
    return value


def _uphill(net, loss, optimizer, x, y):
    value, grad = loss(net.forward(x, training=True), y)
    net.backward(-grad)
    optimizer.step(net.params, net.grads)
    return value


TRAIN_STEP_MISTAKES = [
    (_no_update, "the parameters never change: after net.backward(grad) call "
                 "optimizer.step(net.params, net.grads)"),
    (_step_before_backward, "optimizer.step runs before net.backward, so every step uses the "
                            "previous batch's gradients (and the first step none): the order is "
                            "forward → loss → backward → step"),
    (_uphill, "the parameters move uphill (the loss grows): pass the loss gradient to "
              "net.backward as it is, without a minus sign"),
]


@visible_defaults
def check_model_step(candidate_train_step, *, steps=3, seed=SEED):
    """Check ``train_step(net, loss, optimizer, x, y) -> loss value`` on a small classifier for
    ``steps`` batches: the returned loss and the parameters after every step."""
    def run():
        rng = np.random.default_rng(seed)
        batches = [(rng.standard_normal((8, 4)), rng.integers(0, 3, 8)) for _ in range(steps)]
        start = _small_net(rng)
        ours = _train(candidate_train_step, start, batches, check=True)
        expected = _train(_reference_train_step, start, batches)
        if _same_training(ours, expected):
            return f"losses and parameters match the reference for {steps} steps"
        for mistake, message in TRAIN_STEP_MISTAKES:
            if _same_training(ours, _train(mistake, start, batches)):
                raise Failed(message)
        _diagnose_training(ours, expected)
    return _run(_name(candidate_train_step), run, seed)


def _small_net(rng):
    """Initial float64 parameters of a 4-5-3 MLP, as a state_dict()."""
    net = Net([Dense(5), ReLU(), Dense(3)])
    net.forward(rng.standard_normal((2, 4)))
    return net.state_dict()


def _train(train_step, start, batches, check=False):
    """[(returned loss, parameters after the step)] for every batch, from fresh copies of start."""
    net = Net([Dense(5), ReLU(), Dense(3)])
    net.forward(np.zeros((1, 4)))
    net.load_state_dict(start)
    loss, optimizer = SoftmaxCrossEntropy(), SGD(lr=0.5)
    record = []
    for x, y in batches:
        value = train_step(net, loss, optimizer, x.copy(), y.copy())
        if check:
            value = _returned_loss(value)
        record.append((float(value), net.state_dict()))
    return record




def _returned_loss(value):
    if value is None:
        raise NotDone("train_step returned None — write its code and `return` the loss value")
    if isinstance(value, tuple):
        raise Failed("train_step returned a tuple; return only the loss value (the first thing "
                     "loss(pred, y) gives back)")
    if np.size(value) != 1:
        raise Failed(f"train_step returned an array of shape {np.shape(value)}; return the loss "
                     "value, one number")
    return float(np.asarray(value, dtype=np.float64).reshape(()))


def _same_training(ours, theirs):
    return all(np.isclose(va, vb, rtol=TOLERANCE) and all(_close(pa[k], pb[k]) for k in pb)
               for (va, pa), (vb, pb) in zip(ours, theirs))


def _diagnose_training(ours, expected):
    for t, ((value, params), (ref_value, ref_params)) in enumerate(zip(ours, expected), 1):
        if not np.isclose(value, ref_value, rtol=TOLERANCE):
            raise Failed(f"the loss returned at step {t} is {_fmt(value)}, expected "
                         f"{_fmt(ref_value)}: return the value the loss gave for this batch")
        for name, expected_param in ref_params.items():
            label = name.partition(".")[2]   # "param.0.w" -> "0.w"
            _expect(f"parameter {label} after step {t}", params[name], expected_param)


# ---------------------------------------------------------------- the passes through a net
def net_forward(layers, x):
    """The reference of forward_through: tinynn's Net runs the same layers."""
    return Net(layers).forward(x, training=True)


def net_backward(layers, grad):
    """The reference of backward_through."""
    return Net(layers).backward(grad)


def _net_passes_calls(rng):
    """The hidden inputs: a Dense-Tanh-Dense net, a batch, and the loss gradient at its output."""
    layers = [Dense(5), Tanh(), Dense(4)]
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 4, 6)
    grad = SoftmaxCrossEntropy()(net_forward(layers, x), y)[1]
    return [Call(args=(net_forward, layers, x), candidate=0),
            Call(args=(net_backward, layers, grad), candidate=1)]


NET_PASSES = Exercise(
    "net_passes", ("forward_through", "backward_through"), check_function,
    calls=_net_passes_calls, forbidden=(Net.forward, Net.backward))
TRAIN_STEP = Exercise(
    "train_step", ("my_train_step",), check_model_step, forbidden=(Model.train_step,),
    trials=dict(steps=3), hidden=dict(steps=4))


# ---------------------------------------------------------------- a skip connection's backward
def _skip_block():
    """A float64 Dense-Tanh-Dense block that keeps the width (3 → 3), built on a first batch."""
    block = [Dense(4), Tanh(), Dense(3)]
    Net(block).forward(np.zeros((1, 3)))
    return block


def _skip_trial(candidate, rng, batch):
    """(yours, expected) input gradients and block gradients for y = x + block(x) on one batch."""
    block = _skip_block()
    for layer in block:
        for name, p in layer.params.items():
            p[...] = rng.standard_normal(p.shape) * 0.7
    x, upstream = rng.standard_normal((batch, 3)), rng.standard_normal((batch, 3))
    Net(block).forward(x, training=True)
    block_path = Net(block).backward(upstream.copy())
    expected = {"input": upstream + block_path,
                "grads": [{k: g.copy() for k, g in layer.grads.items()} for layer in block]}
    for layer in block:                       # start the candidate from stale (wrong) gradients
        for g in layer.grads.values():
            g[...] = 7.0
    Net(block).forward(x, training=True)
    yours = candidate(block, upstream.copy())
    if yours is None:
        raise NotDone("skip_backward returned None — `return` dL/dx")
    grads = [{k: g.copy() for k, g in layer.grads.items()} for layer in block]
    return yours, grads, expected, upstream, block_path


SKIP_MISTAKES = [
    (lambda g, path: path, "returns only the gradient through the block: y = x + block(x) "
     "depends on x along two paths, and the identity path x → y carries G unchanged — the two "
     "contributions add"),
    (lambda g, path: g, "returns only G, the identity path: the block's path contributes "
     "block.backward(G) as well, and the two add"),
    (lambda g, path: g * path, "multiplies the two paths: the chain rule over two paths to the "
     "same output adds their contributions (y = x + block(x), so dy/dx = I + d block/dx)"),
    (lambda g, path: (g + path) / 2, "averages the two paths: their contributions add"),
    (lambda g, path: g - path, "subtracts the block's path: y = x + block(x), so it adds"),
]


@visible_defaults
def check_skip_backward(candidate, *, batches=(5, 1, 8), seed=SEED):
    """Check ``skip_backward(block, grad) -> dL/dx`` for y = x + block(x), block a list of
    layers whose forward has run: the returned gradient and the gradients the block's layers
    hold afterwards, on one batch of each size in ``batches``."""
    def run():
        rng = np.random.default_rng(seed)
        for batch in batches:
            yours, grads, expected, upstream, path = _skip_trial(candidate, rng, batch)
            yours = np.asarray(yours, dtype=np.float64)
            if yours.shape == expected["input"].shape and not _close(yours, expected["input"]):
                for wrong, message in SKIP_MISTAKES:
                    if _close(yours, wrong(upstream, path)):
                        raise Failed(message)
            _expect("dL/dx", yours, expected["input"])
            for i, (mine, theirs) in enumerate(zip(grads, expected["grads"])):
                for name, g in theirs.items():
                    if np.all(mine[name] == 7.0):
                        raise Failed(f"the block's layer {i} ({type(_skip_block()[i]).__name__}) "
                                     f"kept a stale grads['{name}']: run the block's backward "
                                     "(last layer first), so each of its layers fills its grads")
                    _expect(f"layer {i}'s grads['{name}']", mine[name], g)
        return f"dL/dx and the block's gradients match on batches of {', '.join(map(str, batches))}"
    return _run(_name(candidate), run, seed)


SKIP_BACKWARD = Exercise(
    "skip_backward", ("skip_backward",), check_skip_backward,
    forbidden=(Residual.backward, Residual.forward), hidden=dict(batches=(3, 7)))
EXERCISES = (NET_PASSES, SKIP_BACKWARD, TRAIN_STEP)
