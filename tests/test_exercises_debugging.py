"""check_batch_dependency (notebook 12's batch-dependency exercise) and tn.batch_dependency:
every planted mistake is named, correct code passes, nothing raises. The mistakes are written as
students write them (not with the module's own variants, which would let a wrong entry there
pass its own test)."""
import copy

import numpy as np
import pytest

import tinynn as tn
from tinynn.course.exercises import check_batch_dependency
from tinynn.course.grading import grade

NOT_DONE = "not yet implemented"


def written(deep=True, training=True, seed="row", rows="all", scale=1.0):
    def my_batch_dependency(net, x, i):
        if deep:
            net = copy.deepcopy(net)
        out = net.forward(x, training=training)
        grad = np.zeros_like(out)
        if seed == "row":
            grad[i] = 1
        elif seed == "all":              # the gradient of out.sum(): the whole batch
            grad[...] = 1
        elif seed == "column":           # output unit i instead of sample i
            grad[:, i % out.shape[1]] = 1
        elif seed == "loss":             # the whole batch's loss
            _, grad = tn.SoftmaxCrossEntropy()(out, np.zeros(len(out), dtype=np.int64))
        elif seed == "output":           # never zeroed: starts as a copy of the output
            grad = out.copy()
            grad[i] = 1
        dx = net.backward(grad * scale)
        if rows == "row i":
            return dx[i]
        if rows == "row i kept 2-d":
            return dx[i:i + 1]
        return dx
    return my_batch_dependency


def todo(net, x, i):
    # YOUR CODE HERE
    raise NotImplementedError()


BUGS = [
    (written(seed="all"), "seeds EVERY row"),
    (written(seed="loss"), "rows other than i are non-zero"),
    (written(seed="output"), "rows other than i are non-zero"),
    (written(seed="column"), "seeds column i"),
    (written(scale=0.2), "seeds row i with 1/N"),
    (written(training=False), "inference mode"),
    (written(deep=False), "copy.deepcopy(net)"),
    (written(rows="row i"), "returned only row i"),
    (written(rows="row i kept 2-d"), "returned only row i"),
    (lambda net, x, i: None, NOT_DONE),
    (todo, NOT_DONE),
]


def verdict(capsys, *args, **kwargs):
    result = check_batch_dependency(*args, **kwargs)
    out, err = capsys.readouterr()
    assert err == ""
    return result, out


@pytest.mark.parametrize("buggy, keyword", BUGS)
def test_batch_dependency_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, buggy, tn.batch_dependency)
    assert result is False and keyword in out, out


def test_a_correct_batch_dependency_passes(capsys):
    for candidate in (written(), tn.batch_dependency):
        result, out = verdict(capsys, candidate, tn.batch_dependency)
        assert result is True and out.startswith("✔") and "2 batches × 3 nets" in out, out


def test_the_hidden_test_passes_the_solution_and_fails_a_mistake(capsys):
    grade("batch_dependency", written())
    with pytest.raises(AssertionError, match="seeds EVERY row"):
        grade("batch_dependency", written(seed="all"))
    capsys.readouterr()


def test_batch_dependency_charts_which_samples_mix():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    tn.seed(0)
    mlp = tn.Net([tn.Dense(5), tn.ReLU(), tn.Dropout(0.5), tn.Dense(3)])
    batchnorm = tn.Net([tn.Dense(5), tn.BatchNorm(), tn.ReLU(), tn.Dense(3)])
    for net in (mlp, batchnorm):
        net(x)
    before = [np.array(v) for v in batchnorm.state_dict().values()]
    state = tn.random.rng().bit_generator.state
    dx = tn.batch_dependency(mlp, x, 2)
    assert dx.shape == x.shape and dx.dtype == np.float64
    assert not np.any(np.delete(dx, 2, axis=0))      # exactly 0: no sample mixes with another
    dx = tn.batch_dependency(batchnorm, x, 2)
    assert np.all(np.abs(np.delete(dx, 2, axis=0)).sum(axis=1) > 0)   # BatchNorm mixes them all
    # shifting every input row by the same vector changes nothing after BatchNorm
    assert np.abs(dx.sum(axis=0)).max() < 1e-12
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, batchnorm.state_dict().values()))
    assert tn.random.rng().bit_generator.state == state      # the dropout masks drew nothing


def test_the_mysteries_carry_their_planted_bugs():
    """Notebook 12's mystery pipelines (the answer key is in notebooks/TEACHING.md): 1 scales
    the pixels a second time, 2 flattens with a batch-mixing reshape, 3 transposes the training
    images only. Checked on random 'images', without training."""
    from tinynn.course.mysteries import make_mysteries
    rng = np.random.default_rng(0)
    x_train, x_val = rng.random((40, 784)).astype(np.float32), rng.random((10, 784)).astype(np.float32)
    y_train, y_val = rng.integers(0, 10, 40), rng.integers(0, 10, 10)
    first, second, third = make_mysteries(x_train, y_train, x_val, y_val)
    assert first.x_train.max() <= 1 / 255 and np.allclose(first.x_val * 255, x_val)
    assert np.array_equal(second.x_train.reshape(40, -1), x_train)
    images = x_train.reshape(-1, 28, 28)
    assert np.array_equal(third.x_train.reshape(-1, 28, 28), images.transpose(0, 2, 1))
    assert np.array_equal(third.x_val, x_val)
    for mystery, mixes in ((first, False), (second, True), (third, False)):
        model = mystery.model()
        model.net(mystery.x_train[:2])
        dx = tn.batch_dependency(model.net, mystery.x_train[:6], 0)
        assert bool(np.any(dx[1:])) == mixes, mystery.name
