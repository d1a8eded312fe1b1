"""Notebook 14's checks (causal softmax, attention's backward, LayerNorm's backward): a correct
answer passes, every named mistake is named, nothing raises; the references agree with tinynn's
layers, with tinynn's autograd and with PyTorch; and grade() passes right answers on the hidden
trials and refuses borrowed ones."""
import numpy as np
import pytest

import tinynn as tn
from tinynn.course.exercises.n14_attention import (
    attention_backward_reference, causal_softmax, check_attention_backward, check_causal_softmax,
    check_layer_norm_backward, layer_norm_backward_reference)
from tinynn.course.grading import grade


def verdict(capsys, check, *args, **kwargs):
    result = check(*args, **kwargs)
    out, err = capsys.readouterr()
    assert err == ""
    return result, out


# ------------------------------------------------------------------ answers, written as a student
def my_causal_softmax(scores):
    time = scores.shape[-1]
    masked = np.where(np.tril(np.ones((time, time), dtype=bool)), scores, -np.inf)
    e = np.exp(masked - masked.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_variant(mask=lambda t: np.tril(np.ones((t, t), dtype=bool)), axis=-1, shift=True,
                    fill=-np.inf, after=False, shift_all=False):
    def candidate(scores):
        m = mask(scores.shape[-1])
        if after:
            e = np.exp(scores - scores.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True) * m
        if shift_all:
            e = np.exp(scores - scores.max(axis=-1, keepdims=True)) * m
            return e / e.sum(axis=-1, keepdims=True)
        s = np.where(m, scores, fill)
        e = np.exp(s - s.max(axis=axis, keepdims=True) if shift else s)
        return e / e.sum(axis=axis, keepdims=True)
    return candidate


SOFTMAX_MISTAKES = [
    (softmax_variant(mask=lambda t: np.triu(np.ones((t, t), dtype=bool))), "wrong triangle"),
    (softmax_variant(mask=lambda t: np.tril(np.ones((t, t), dtype=bool), -1)), "diagonal too"),
    (softmax_variant(axis=-2), "wrong axis"),
    (softmax_variant(shift=False), "overflows"),
    (softmax_variant(after=True), "without renormalising"),
    (softmax_variant(fill=0.0), "sets the masked scores to 0"),
    (softmax_variant(mask=lambda t: np.ones((t, t), dtype=bool)), "applies no mask"),
    (softmax_variant(shift_all=True), "maximum over ALL keys"),
]


def my_attention_backward(q, k, v, grad_out, scale_backward=True, jacobian="full", masked=True,
                          dk_transposed=False, order=(0, 1, 2)):
    d = q.shape[1]
    scores = q @ k.T / np.sqrt(d)
    if masked:
        scores = np.where(np.tril(np.ones((len(q), len(q)), dtype=bool)), scores, -np.inf)
    a = np.exp(scores - scores.max(axis=1, keepdims=True))
    a /= a.sum(axis=1, keepdims=True)
    da = grad_out @ v.T
    dv = a.T @ grad_out
    if jacobian == "full":
        ds = a * (da - (da * a).sum(axis=1, keepdims=True))
    elif jacobian == "elementwise":
        ds = da * a * (1 - a)
    else:
        ds = da - (da * a).sum(axis=1, keepdims=True)
    c = 1 / np.sqrt(d) if scale_backward else 1.0
    dq = ds @ k * c
    dk = (ds if dk_transposed else ds.T) @ q * c
    result = (dq, dk, dv)
    return tuple(result[i] for i in order)


def attention_variant(**flags):
    return lambda q, k, v, g: my_attention_backward(q, k, v, g, **flags)


ATTENTION_MISTAKES = [
    (attention_variant(scale_backward=False), "forgets the scale 1/√d in the backward"),
    (attention_variant(jacobian="elementwise"), "p(1 − p) elementwise"),
    (attention_variant(dk_transposed=True), "dk is transposed"),
    (attention_variant(masked=False), "without the causal mask"),
    (attention_variant(jacobian="no_a"), "leaks into the future"),
    (attention_variant(order=(1, 0, 2)), "wrong order"),
    (lambda q, k, v, g: tuple(-x for x in my_attention_backward(q, k, v, g)), "wrong sign"),
]


def my_layer_norm_backward(x, gamma, grad_out, eps=1e-5, mean_term=True, var_term=True,
                           axis=-1, sum_rows=True):
    rows = tuple(range(x.ndim - 1))
    stats = rows if axis != -1 else -1
    mean = x.mean(axis=stats, keepdims=True)
    inv = 1 / np.sqrt(x.var(axis=stats, keepdims=True) + eps)
    x_hat = (x - mean) * inv
    g = grad_out * gamma
    dx = g.copy()
    if mean_term:
        dx -= g.mean(axis=stats, keepdims=True)
    if var_term:
        dx -= x_hat * (g * x_hat).mean(axis=stats, keepdims=True)
    dgamma, dbeta = grad_out * x_hat, grad_out
    if sum_rows:
        dgamma, dbeta = dgamma.sum(axis=rows), dbeta.sum(axis=rows)
    return dx * inv, dgamma, dbeta


def layer_norm_variant(**flags):
    return lambda x, gamma, g: my_layer_norm_backward(x, gamma, g, **flags)


LAYER_NORM_MISTAKES = [
    (layer_norm_variant(mean_term=False), "forgets the term through the MEAN"),
    (layer_norm_variant(var_term=False), "forgets the term through the VARIANCE"),
    (layer_norm_variant(axis=0), "as BatchNorm does"),
    (layer_norm_variant(sum_rows=False), "not summed"),
    (lambda x, gamma, g: (*my_layer_norm_backward(x, gamma, g)[:2], g.sum(axis=0)),
     "summed over the batch axis but not over the time axis"),
]


# ------------------------------------------------------------------ the checks
@pytest.mark.parametrize("check, candidate", [
    (check_causal_softmax, my_causal_softmax),
    (check_attention_backward, my_attention_backward),
    (check_layer_norm_backward, my_layer_norm_backward)], ids=["softmax", "attention", "norm"])
def test_a_correct_answer_passes(capsys, check, candidate):
    passed, out = verdict(capsys, check, candidate)
    assert passed and out.startswith("✔"), out


@pytest.mark.parametrize("check, candidate, keyword", [
    *[(check_causal_softmax, c, k) for c, k in SOFTMAX_MISTAKES],
    *[(check_attention_backward, c, k) for c, k in ATTENTION_MISTAKES],
    *[(check_layer_norm_backward, c, k) for c, k in LAYER_NORM_MISTAKES]],
    ids=lambda v: v if isinstance(v, str) else "")
def test_every_named_mistake_is_named(capsys, check, candidate, keyword):
    passed, out = verdict(capsys, check, candidate)
    assert not passed and out.startswith("✘") and keyword in out, out


@pytest.mark.parametrize("check, arguments", [
    (check_causal_softmax, 1), (check_attention_backward, 4), (check_layer_norm_backward, 3)])
def test_unwritten_and_crashing_answers_never_raise(capsys, check, arguments):
    def unwritten(*args):
        raise NotImplementedError()

    def crashing(*args):
        return args[0] @ np.ones((99, 2))

    assert "not yet implemented" in verdict(capsys, check, unwritten)[1]
    assert "not yet implemented" in verdict(capsys, check, lambda *args: None)[1]
    passed, out = verdict(capsys, check, crashing)
    assert not passed and "raised ValueError" in out


def test_the_leak_probe_names_gradient_reaching_the_future(capsys):
    def leaky(q, k, v, g):
        dq, dk, dv = my_attention_backward(q, k, v, g)
        return dq, dk, dv + 1e-3 * np.tril(np.ones((len(q), len(q))), -1) @ g  # v_s gets g_t, t < s
    passed, out = verdict(capsys, check_attention_backward, leaky)
    assert not passed and "leaks into future positions" in out, out


# ------------------------------------------------------------------ the references
def test_causal_softmax_reference_is_the_layers_masked_softmax():
    scores = np.random.default_rng(0).standard_normal((2, 3, 5, 5)) * 50
    weights = causal_softmax(scores)
    assert np.allclose(weights.sum(axis=-1), 1) and np.all(np.triu(weights[0, 0], 1) == 0)
    assert np.allclose(weights, my_causal_softmax(scores))


def _attention_layer(q, k, v):
    """MultiHeadAttention(1) whose projections pick q, k, v out of the input [q | k | v]."""
    d = q.shape[1]
    layer = tn.MultiHeadAttention(1, dtype=np.float64)
    x = np.concatenate([q, k, v], axis=1)[None]
    layer.forward(np.zeros((1, 1, 3 * d)))
    pick = [np.zeros((3 * d, 3 * d)) for _ in range(3)]
    for i, p in enumerate(pick):
        p[i * d:(i + 1) * d, :d] = np.eye(d)
    wo = np.zeros((3 * d, 3 * d))
    wo[:d, :d] = np.eye(d)
    zero = np.zeros(3 * d)
    # the scale is 1/√(3d) inside the layer: rescale the query so it is 1/√d
    pick[0] *= np.sqrt(3)
    layer.load_params({"wq": pick[0], "wk": pick[1], "wv": pick[2], "wo": wo, "bq": zero,
                       "bv": zero, "bo": zero})
    return layer, x


def test_attention_reference_agrees_with_multi_head_attention_and_the_hand_formula():
    rng = np.random.default_rng(1)
    q, k, v, g = (rng.standard_normal((6, 3)) for _ in range(4))
    dq, dk, dv = attention_backward_reference(q, k, v, g)
    for ours, theirs in zip((dq, dk, dv), my_attention_backward(q, k, v, g)):
        assert np.allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    layer, x = _attention_layer(q, k, v)
    out = layer.forward(x)
    grad_out = np.concatenate([g, np.zeros((6, 6))], axis=1)[None]
    dx = layer.backward(grad_out)[0]
    assert np.allclose(dx, np.concatenate([dq, dk, dv], axis=1), rtol=1e-10, atol=1e-12)
    assert out.shape == x.shape


def test_attention_reference_agrees_with_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    q, k, v, g = (rng.standard_normal((5, 4)) for _ in range(4))
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(tq[None], tk[None], tv[None],
                                                           is_causal=True)[0]
    out.backward(torch.tensor(g))
    for ours, theirs in zip(attention_backward_reference(q, k, v, g), (tq, tk, tv)):
        assert np.allclose(ours, theirs.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_layer_norm_reference_agrees_with_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x, g, gamma = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 5)), rng.random(5)
    tx = torch.tensor(x, requires_grad=True)
    norm = torch.nn.LayerNorm(5, eps=1e-5).double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor(gamma))
    norm(tx).backward(torch.tensor(g))
    dx, dgamma, dbeta = layer_norm_backward_reference(x, gamma, g)
    for ours, theirs in ((dx, tx.grad), (dgamma, norm.weight.grad), (dbeta, norm.bias.grad)):
        assert np.allclose(ours, theirs.numpy(), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ hidden tests
@pytest.mark.parametrize("exercise, candidate", [
    ("causal_softmax", my_causal_softmax), ("attention_backward", my_attention_backward),
    ("layer_norm_backward", my_layer_norm_backward)])
def test_grade_passes_right_answers_on_the_hidden_trials(capsys, exercise, candidate):
    grade(exercise, candidate)
    assert "passed" in capsys.readouterr().out


def test_grade_refuses_the_autograd_in_a_hand_derived_backward(capsys):
    def borrowed(q, k, v, g):
        tq, tk, tv = (tn.Tensor(a) for a in (q, k, v))
        scores = tn.autograd.where(np.tril(np.ones((len(q), len(q)), dtype=bool)),
                                   (tq @ tk.T) * (1 / np.sqrt(q.shape[1])), -np.inf)
        e = (scores - scores.data.max(axis=-1, keepdims=True)).exp()
        ((e / e.sum(axis=-1, keepdims=True)) @ tv).backward(g)
        return tq.grad, tk.grad, tv.grad
    with pytest.raises(AssertionError, match="calls tinynn's"):
        grade("attention_backward", borrowed)
    with pytest.raises(AssertionError, match="calls tinynn's"):
        grade("causal_softmax", lambda s: tn.functional.softmax(
            np.where(np.tril(np.ones(s.shape[-2:], dtype=bool)), s, -np.inf), axis=-1))
