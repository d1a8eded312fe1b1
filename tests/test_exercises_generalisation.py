"""check_dropout and check_optimizer(…, tn.AdamW): every planted mistake is named, a correct
layer passes, nothing raises (notebook 08's exercises)."""
import numpy as np
import pytest

import tinynn as tn
from tinynn.course.exercises import check_dropout, check_optimizer
from tinynn.random import rng


def verdict(capsys, check, *args, **kwargs):
    result = check(*args, **kwargs)
    out, err = capsys.readouterr()
    assert err == ""
    return result, out


class MyDropout(tn.Layer):
    """Inverted dropout, written the way notebook 08 asks for it."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x, training=True):
        if not training:
            return x
        self.mask = (rng().random(x.shape) >= self.p).astype(x.dtype) / (1 - self.p)
        return x * self.mask

    def backward(self, grad):
        return grad * self.mask


def dropout(forward=None, backward=None):
    return type("BuggyDropout", (MyDropout,),
                {**({"forward": forward} if forward else {}),
                 **({"backward": backward} if backward else {})})


def no_scale(self, x, training=True):
    if not training:
        return x
    self.mask = (rng().random(x.shape) >= self.p).astype(x.dtype)
    return x * self.mask


def times_keep(self, x, training=True):
    if not training:
        return x
    self.mask = (rng().random(x.shape) >= self.p).astype(x.dtype) * (1 - self.p)
    return x * self.mask


def p_keeps(self, x, training=True):
    if not training:
        return x
    self.mask = (rng().random(x.shape) < self.p).astype(x.dtype) / self.p
    return x * self.mask


def scaled_at_inference(self, x, training=True):
    if not training:
        return x * (1 - self.p)
    return MyDropout.forward(self, x, training)


def divided_at_inference(self, x, training=True):
    if not training:
        return x / (1 - self.p)
    return MyDropout.forward(self, x, training)


def dropout_always(self, x, training=True):
    return MyDropout.forward(self, x, True)


def never_drops(self, x, training=True):
    self.mask = np.ones_like(x)
    return x


def old_style_training(self, x, training=True):
    self.mask = np.full_like(x, 1 - self.p)
    return x * self.mask


def fixed_mask(self, x, training=True):
    if not training:
        return x
    if not hasattr(self, "fixed"):
        self.fixed = (np.random.default_rng(0).random(x.shape) >= self.p) / (1 - self.p)
    self.mask = self.fixed.astype(x.dtype)
    return x * self.mask


def in_place(self, x, training=True):
    if not training:
        return x
    self.mask = (rng().random(x.shape) >= self.p).astype(x.dtype) / (1 - self.p)
    x *= self.mask
    return x


def float64_mask(self, x, training=True):
    if not training:
        return x
    self.mask = (rng().random(x.shape) >= self.p) / (1 - self.p)   # float64 whatever x is
    return x * self.mask


def inference_clears_mask(self, x, training=True):
    if not training:
        self.mask = None
        return x
    return MyDropout.forward(self, x, training)


def inference_new_mask(self, x, training=True):
    self.mask = (rng().random(x.shape) >= self.p).astype(x.dtype) / (1 - self.p)
    return x if not training else x * self.mask


def backward_unchanged(self, grad):
    return grad


def backward_new_mask(self, grad):
    return grad * (rng().random(grad.shape) >= self.p) / (1 - self.p)


def backward_no_scale(self, grad):
    return grad * (self.mask != 0)


def backward_none(self, grad):
    pass


def forward_none(self, x, training=True):
    pass


def remembers_first(self, x, training=True):
    if not training:
        return x
    y = MyDropout.forward(self, x, training)
    if not hasattr(self, "first_mask"):
        self.first_mask = self.mask
    return y


def backward_first(self, grad):
    return grad * self.first_mask


def not_done(self, x, training=True):
    raise NotImplementedError()


MISTAKES = [
    (dropout(forward=no_scale), "forgot the scale"),
    (dropout(forward=times_keep), "DIVIDES them by (1 − p)"),
    (dropout(forward=p_keeps), "probability to DROP"),
    (dropout(forward=scaled_at_inference), "scales by (1 − p) at inference"),
    (dropout(forward=divided_at_inference), "scales by 1/(1 − p) at inference"),
    (dropout(forward=dropout_always), "drops units at inference"),
    (dropout(forward=never_drops), "drops nothing"),
    (dropout(forward=old_style_training), "old-style dropout does at INFERENCE"),
    (dropout(forward=fixed_mask), "same units on every training forward"),
    (dropout(forward=in_place), "changed its input x in place"),
    (dropout(forward=float64_mask), "never changes the dtype"),
    (dropout(forward=inference_clears_mask), "must leave the mask saved"),
    (dropout(forward=inference_new_mask), "changed the mask that backward uses"),
    (dropout(backward=backward_unchanged), "passes the gradient through unchanged"),
    (dropout(backward=backward_new_mask), "draws a new random mask"),
    (dropout(backward=backward_no_scale), "forgot the scale"),
    (dropout(forward=remembers_first, backward=backward_first), "mask of an EARLIER forward"),
    (dropout(forward=forward_none), "returned None"),
    (dropout(backward=backward_none), "returned None"),
]


@pytest.mark.parametrize("candidate, words", MISTAKES, ids=lambda v: getattr(v, "__name__", v)[:40])
def test_check_dropout_names_the_mistake(capsys, candidate, words):
    passed, out = verdict(capsys, check_dropout, candidate)
    assert not passed and words in out, out
    assert out.startswith(("✘", "not yet implemented")), out


def test_check_dropout_passes_a_correct_layer_and_the_reference(capsys):
    for candidate in (MyDropout, tn.Dropout, MyDropout(0.3)):
        passed, out = verdict(capsys, check_dropout, candidate)
        assert passed and out.startswith("✔"), out


def test_check_dropout_passes_a_layer_that_uses_numpys_global_generator(capsys):
    def forward(self, x, training=True):
        if not training:
            return x
        self.mask = (np.random.rand(*x.shape) > self.p).astype(x.dtype) / (1 - self.p)
        return x * self.mask
    for _ in range(5):
        passed, out = verdict(capsys, check_dropout, dropout(forward=forward))
        assert passed, out


def test_check_dropout_reports_not_done_and_never_raises(capsys):
    passed, out = verdict(capsys, check_dropout, dropout(forward=not_done))
    assert not passed and out.startswith("not yet implemented") and "raises NotImplementedError" in out

    class Broken(tn.Layer):
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, x, training=True):
            return x @ x                     # a shape error inside student code

    passed, out = verdict(capsys, check_dropout, Broken)
    assert not passed and "raised ValueError" in out

    class NoP(tn.Layer):
        def forward(self, x, training=True):
            return x
    passed, out = verdict(capsys, check_dropout, NoP())
    assert not passed and "self.p" in out
    passed, out = verdict(capsys, check_dropout, NoP)       # constructor takes no p
    assert not passed and "could not construct" in out


def test_check_dropout_leaves_the_notebooks_generator_alone(capsys):
    tn.seed(5)
    expected = tn.random.rng().random(3)
    tn.seed(5)
    verdict(capsys, check_dropout, MyDropout)
    assert np.array_equal(tn.random.rng().random(3), expected)


# ================================================================ AdamW in check_optimizer
class MyAdamW(tn.Optimizer):
    decoupled_weight_decay = True

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, weight_decay)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, param, grad):
        param -= self.lr * self.weight_decay * param
        m, v = self.slots(param, 2)
        m[...] = self.beta1 * m + (1 - self.beta1) * grad
        v[...] = self.beta2 * v + (1 - self.beta2) * grad ** 2
        m_hat, v_hat = m / (1 - self.beta1 ** self.t), v / (1 - self.beta2 ** self.t)
        param -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def adamw_update(decay):
    def update(self, param, grad):
        decay(self, param, grad)
    return type("BuggyAdamW", (MyAdamW,), {"update": update})


def as_l2(self, param, grad):
    tn.Adam.update(self, param, grad + self.weight_decay * param)


def without_lr(self, param, grad):
    param *= 1 - self.weight_decay
    tn.Adam.update(self, param, grad)


def after(self, param, grad):
    tn.Adam.update(self, param, grad)
    param *= 1 - self.lr * self.weight_decay


def no_decay(self, param, grad):
    tn.Adam.update(self, param, grad)


def borrowed_adam(cls):
    """A candidate that borrows Adam's update for the Adam part (fields Adam needs)."""
    cls.fast = False
    return cls


@pytest.mark.parametrize("mistake, words", [(as_l2, "Adam + L2"), (without_lr, "multiply λ by the learning rate"),
                                            (after, "decay first"), (no_decay, "plain Adam's")])
def test_check_optimizer_names_adamw_mistakes(capsys, mistake, words):
    candidate = borrowed_adam(adamw_update(mistake))
    passed, out = verdict(capsys, check_optimizer, candidate, tn.AdamW, lr=0.1, weight_decay=0.1)
    assert not passed and words in out, out


def test_check_optimizer_passes_a_correct_adamw(capsys):
    passed, out = verdict(capsys, check_optimizer, MyAdamW, tn.AdamW, lr=0.1, weight_decay=0.1)
    assert passed, out
