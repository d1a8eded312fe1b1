"""Sequences (tinynn.sequence, LayerNorm, nested nets, build_gpt): gradient checks in float64,
causality, bad input, nesting through params/state_dict/save/load/LayerStats, sampling, and a
small GPT that learns."""
import numpy as np
import pytest

import tinynn as tn
from conftest_helpers import GRAD_TOL, arrays
from tinynn.models import build_gpt
from tinynn.net import leaf_layers


def ids(seed, shape, vocab=7):
    return np.random.default_rng(seed).integers(0, vocab, shape)


def gpt(dtype=None, **kwargs):
    settings = dict(vocab_size=7, context=6, dim=8, heads=2, layers=2)
    settings.update(kwargs)
    return build_gpt(dtype=dtype, **settings)


# ---------------------------------------------------------------- gradient checks (float64)
@pytest.mark.parametrize("make, shape", [
    (lambda: tn.LayerNorm(), (4, 5)),
    (lambda: tn.LayerNorm(eps=0.1), (2, 3, 5)),
    (lambda: tn.PositionalEmbedding(6), (2, 4, 3)),
    (lambda: tn.MultiHeadAttention(2), (2, 5, 4)),
    (lambda: tn.MultiHeadAttention(1), (2, 4, 3)),
    (lambda: tn.MultiHeadAttention(3, causal=False), (2, 4, 6)),
    (lambda: tn.Dense(3), (2, 4, 5)),
    (lambda: tn.Residual(tn.Dense(4)), (3, 4)),
    (lambda: tn.Residual(tn.Net([tn.LayerNorm(), tn.MultiHeadAttention(2)])), (2, 5, 4)),
    (lambda: tn.Residual(tn.Net([tn.LayerNorm(), tn.Dense(8), tn.GELU(), tn.Dense(4)])), (2, 3, 4)),
], ids=["LayerNorm-2d", "LayerNorm-3d", "PositionalEmbedding", "MHA-causal", "MHA-one-head",
        "MHA-full", "Dense-3d", "Residual-Dense", "Residual-attention", "Residual-MLP"])
def test_every_sequence_layer_passes_gradcheck_on_every_parameter(make, shape):
    layer = make()
    x = arrays(3, shape)
    layer.forward(x)  # build, then random parameters (a zero bias would hide a wrong gradient)
    gen = np.random.default_rng(4)
    for p in layer.params.values():
        p[...] = gen.standard_normal(p.shape) * 0.5
    errors = tn.gradcheck(layer, x)
    assert set(errors) == {"input", *layer.params}
    assert max(errors.values()) < GRAD_TOL, errors


def test_embedding_gradcheck_has_no_input_entry_and_adds_repeated_ids():
    layer = tn.Embedding(5, 3, dtype=np.float64)
    x = np.array([[1, 1, 4], [1, 0, 0]])
    errors = tn.gradcheck(layer, x)
    assert set(errors) == {"w"} and errors["w"] < GRAD_TOL
    layer.forward(x)
    assert layer.backward(np.ones((2, 3, 3))) is None
    np.testing.assert_array_equal(layer.grads["w"][:, 0], [2, 3, 0, 0, 1])  # row 1 read 3 times


def test_the_sequence_loss_passes_gradcheck_and_is_the_mean_over_positions():
    logits, targets = arrays(5, (3, 4, 6)), ids(5, (3, 4), vocab=6)
    assert tn.gradcheck(tn.SoftmaxCrossEntropy(), logits, targets)["input"] < GRAD_TOL
    value, _ = tn.SoftmaxCrossEntropy()(logits, targets)
    flat, _ = tn.SoftmaxCrossEntropy()(logits.reshape(12, 6), targets.reshape(12))
    assert value == pytest.approx(flat, rel=1e-12)


def test_a_whole_small_gpt_passes_gradcheck_net():
    tn.seed(0)
    net = gpt(np.float64, layers=2)
    x = ids(1, (2, 6))
    net.forward(x)
    report = tn.gradcheck_net(net, tn.SoftmaxCrossEntropy(), x, ids(2, (2, 6)))
    assert report.ok, report
    assert len(report.errors) == len(net.params) and "4.1.wq" in report.errors


# ---------------------------------------------------------------- what the layers compute
def test_causal_attention_never_looks_ahead():
    layer = tn.MultiHeadAttention(2)
    x = arrays(6, (2, 5, 4))
    y = layer.forward(x)
    changed = x.copy()
    changed[:, 3:] += 10.0  # the future of positions 0..2
    y2 = layer.forward(changed)
    np.testing.assert_allclose(y2[:, :3], y[:, :3], rtol=1e-12, atol=1e-12)
    assert not np.allclose(y2[:, 3:], y[:, 3:])
    full = tn.MultiHeadAttention(2, causal=False)
    full.forward(x)
    full.params.update({k: v.copy() for k, v in layer.params.items()})
    assert not np.allclose(full.forward(changed)[:, :3], full.forward(x)[:, :3])


def test_dense_on_a_sequence_is_dense_on_every_position():
    layer = tn.Dense(3)
    x = arrays(7, (2, 4, 5))
    y = layer.forward(x)
    upstream = arrays(8, y.shape)
    dx = layer.backward(upstream)
    flat = tn.Dense(3)
    flat.forward(x.reshape(8, 5))
    flat.params.update({k: v.copy() for k, v in layer.params.items()})
    np.testing.assert_allclose(y.reshape(8, 3), flat.forward(x.reshape(8, 5)), rtol=1e-12)
    np.testing.assert_allclose(dx.reshape(8, 5), flat.backward(upstream.reshape(8, 3)), rtol=1e-12)
    for name in ("w", "b"):
        np.testing.assert_allclose(layer.grads[name], flat.grads[name], rtol=1e-12)


def test_layer_norm_standardises_each_position_alone():
    x = arrays(9, (2, 3, 6)) * 5 + 2
    y = tn.LayerNorm().forward(x)
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=-1), 1, rtol=1e-4)
    one = tn.LayerNorm().forward(x[:1, :1])  # a batch of one is fine, and the same
    np.testing.assert_allclose(one, y[:1, :1], rtol=1e-12)


def test_residual_adds_its_input_and_its_gradient():
    block = tn.Dense(4)
    layer = tn.Residual(block)
    x = arrays(10, (3, 4))
    y = layer.forward(x)
    np.testing.assert_allclose(y, x + block.forward(x), rtol=1e-12)
    upstream = arrays(11, (3, 4))
    dx = layer.backward(upstream)
    np.testing.assert_allclose(dx, upstream + upstream @ block.params["w"].T, rtol=1e-12)
    assert layer.backward(upstream, input_grad=False) is None
    assert layer.params["w"] is block.params["w"] and layer.grads["b"] is block.grads["b"]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("action, words", [
    (lambda: tn.Embedding(5, 3).forward(np.array([[0, 5]])), ["Embedding(num_embeddings=5",
                                                              "[0, 4]", "max 5"]),
    (lambda: tn.Embedding(5, 3).forward(np.array([[-1, 2]])), ["[0, 4]", "min -1"]),
    (lambda: tn.Embedding(5, 3).forward(np.array([[0.0, 2.0]])), ["integer token ids", "float64"]),
    (lambda: tn.PositionalEmbedding(4).forward(np.zeros((2, 5, 3))),
     ["PositionalEmbedding(max_len=4)", "5 positions", "(2, 5, 3)", "max_len=4"]),
    (lambda: tn.MultiHeadAttention(2).forward(np.zeros((4, 6))),
     ["MultiHeadAttention(num_heads=2, causal=True)", "(batch, time, dim)", "(4, 6)", "causal"]),
    (lambda: tn.MultiHeadAttention(4).forward(np.zeros((2, 3, 6))), ["6", "4 heads"]),
    (lambda: tn.Residual(tn.Dense(3)).forward(np.zeros((2, 4))), ["Residual", "(2, 4)", "(2, 3)"]),
    (lambda: tn.SoftmaxCrossEntropy()(np.zeros((2, 3, 4)), np.zeros((2, 4), np.int64)),
     ["(2, 3)", "(2, 4)"]),
    (lambda: tn.LayerNorm().forward(np.zeros(4)), ["LayerNorm", "(4,)"]),
], ids=["id-too-large", "id-negative", "float-ids", "too-long", "causal-given-2d",
        "heads-do-not-divide", "residual-shape", "sequence-targets", "layernorm-1d"])
def test_bad_sequence_input_is_refused_naming_layer_and_shapes(action, words):
    with pytest.raises(tn.ShapeError) as info:
        action()
    missing = [w for w in words if w not in str(info.value)]
    assert not missing, f"message lacks {missing}: {info.value}"


def test_a_model_of_a_gpt_refuses_float_ids_and_keeps_integer_ones():
    model = tn.Model(gpt(), tn.SoftmaxCrossEntropy(), tn.Adam())
    with pytest.raises(tn.ShapeError, match="integer token ids.*float32"):
        model.train_step(ids(0, (2, 6)).astype(np.float32), ids(1, (2, 6)))
    assert model.predict(ids(0, (2, 6))).shape == (2, 6, 7) and model.dtype == np.float32


# ---------------------------------------------------------------- nesting
def test_a_net_inside_a_net_is_the_flat_net():
    tn.seed(0)
    inner = tn.Net([tn.Dense(5), tn.Tanh()])
    nested = tn.Net([tn.Dense(4), inner, tn.Dense(2)])
    x = arrays(12, (3, 6))
    y = nested.forward(x, training=True)
    flat = tn.Net([nested.layers[0], *inner.layers, nested.layers[2]])
    np.testing.assert_array_equal(flat.forward(x), y)
    assert len(nested.params) == 6 and all(a is b for a, b in zip(nested.params, flat.params))
    upstream = arrays(13, y.shape)
    dx = nested.backward(upstream)
    grads = [g.copy() for g in nested.grads]
    flat.forward(x, training=True)
    np.testing.assert_array_equal(flat.backward(upstream), dx)
    for a, b in zip(grads, flat.grads):
        np.testing.assert_array_equal(a, b)


def test_nested_state_dict_names_every_layer_by_its_path_and_loads_back():
    tn.seed(0)
    net = gpt(layers=1)
    net.forward(ids(0, (2, 6)))
    keys = list(net.state_dict())
    assert keys[:4] == ["param.0.w", "param.1.w", "param.2.0.gamma", "param.2.0.beta"]
    assert "param.2.1.wq" in keys and "param.3.3.b" in keys and "param.2.1.bk" not in keys
    assert len(keys) == len(net.params)
    saved = net.state_dict()
    for p in net.params:
        p[...] = 0
    net.load_state_dict(saved)
    assert all(np.array_equal(a, saved[k]) for k, a in net.state_dict().items())
    with pytest.raises(tn.ShapeError, match="param.2.1.wq"):
        net.load_state_dict({k: v for k, v in saved.items() if k != "param.2.1.wq"})


def test_batchnorm_state_inside_a_residual_reaches_state_dict():
    net = tn.Net([tn.Dense(3), tn.Residual(tn.Net([tn.BatchNorm(), tn.Dense(3)]))])
    net.forward(arrays(14, (5, 2)), training=True)
    assert {"state.1.0.running_mean", "state.1.0.running_var"} <= set(net.state_dict())
    assert set(net.layers[1].state) == {"0.running_mean", "0.running_var"}


def test_a_gpt_saves_and_loads_with_identical_predictions(tmp_path):
    tn.seed(0)
    x = ids(3, (4, 6))
    model = tn.Model(gpt(), tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-2))
    model.fit(x, ids(4, (4, 6)), epochs=2, batch_size=2)
    path = model.save(tmp_path / "gpt")
    tn.seed(1)
    other = tn.Model(gpt(), tn.SoftmaxCrossEntropy(), tn.Adam())
    assert not np.array_equal(other.predict(x), model.predict(x))
    other.load(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    assert all(np.array_equal(a, b) for a, b in zip(other.net.params, model.net.params))
    with np.load(path) as f:
        assert '"type": "Residual", "block": {"type": "Net"' in str(f["architecture"])


@pytest.mark.parametrize("make, words", [
    (lambda: gpt(layers=1), ["the file has 8 layers, this net has 6"]),
    (lambda: gpt(heads=4), ["layer 2.1 (MultiHeadAttention)", "num_heads=2", "num_heads=4"]),
    (lambda: tn.Net([tn.Embedding(7, 8), tn.PositionalEmbedding(6), tn.Residual(tn.Net(
        [tn.LayerNorm()])), *gpt().layers[3:]]), ["inside layer 2 (Net)", "2 layers", "1"]),
], ids=["fewer-blocks", "other-heads", "shorter-block"])
def test_a_gpt_file_refuses_a_different_nested_architecture(tmp_path, make, words):
    model = tn.Model(gpt(), tn.SoftmaxCrossEntropy(), tn.Adam())
    model.predict(ids(0, (1, 6)))
    path = model.save(tmp_path / "gpt")
    with pytest.raises(tn.DataError) as info:
        tn.Model(make(), tn.SoftmaxCrossEntropy(), tn.Adam()).load(path)
    missing = [w for w in words if w not in str(info.value)]
    assert not missing, f"message lacks {missing}: {info.value}"


def test_layer_stats_reach_every_nested_layer():
    tn.seed(0)
    x, y = ids(5, (8, 6)), ids(6, (8, 6))
    stats = tn.LayerStats(x[:4])
    model = tn.Model(gpt(layers=1), tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3))
    model.fit(x, y, epochs=1, batch_size=4, callbacks=[stats])
    assert stats.layers[:6] == ["0 Embedding", "1 PositionalEmbedding", "2.0 LayerNorm",
                                "2.1 MultiHeadAttention", "2 Residual", "3.0 LayerNorm"]
    ratios, grads = stats.latest("update_ratio"), stats.latest("grad_std")
    assert 0 < ratios["2.1 MultiHeadAttention"] < 1e-1 and grads["2.1 MultiHeadAttention"] > 0
    assert np.isnan(ratios["2 Residual"]) and np.isnan(ratios["3.2 GELU"])
    assert len(stats.steps) == 2 and "3.3 Dense" in stats.summary()


# ---------------------------------------------------------------- sampling
def test_sampling_is_reproducible_and_top_k_1_is_greedy():
    tn.seed(0)
    net = gpt()
    net.forward(ids(0, (1, 6)))  # built before the seed: sampling alone draws from it
    tn.seed(5)
    first = tn.sample(net, [0, 3], steps=8)
    tn.seed(5)
    assert np.array_equal(tn.sample(net, [0, 3], steps=8), first)
    assert first.shape == (1, 10) and first.dtype == np.int64 and list(first[0, :2]) == [0, 3]
    greedy = tn.sample(net, [[0], [4]], steps=8, top_k=1)
    assert greedy.shape == (2, 9)
    for t in range(1, 9):  # each token is the argmax given the last 6 (context) tokens
        expected = net.forward(greedy[:, max(0, t - 6):t])[:, -1].argmax(axis=1)
        np.testing.assert_array_equal(greedy[:, t], expected)


def test_draw_keeps_to_the_top_k_and_follows_the_probabilities():
    tn.seed(0)
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]] * 20000))
    drawn = tn.sequence.draw(logits)
    np.testing.assert_allclose(np.bincount(drawn, minlength=4) / 20000, [0.1, 0.2, 0.3, 0.4],
                               atol=0.015)
    top2 = tn.sequence.draw(logits, top_k=2)
    np.testing.assert_allclose(np.bincount(top2, minlength=4) / 20000, [0, 0, 3 / 7, 4 / 7],
                               atol=0.015)
    cold = tn.sequence.draw(logits / 0.05)  # a low temperature: nearly always the largest
    assert np.mean(cold == 3) > 0.99


def test_sampling_stops_at_the_stop_token_and_checks_its_arguments():
    tn.seed(0)
    net = gpt()
    out = tn.sample(net, np.zeros((20, 1), np.int64), steps=30, stop=0)
    finished = [row for row in out if 0 in row[1:]]
    assert finished, "no row emitted the stop token in 30 steps of a 7-token vocabulary"
    for row in finished:
        first = 1 + list(row[1:]).index(0)
        assert np.all(row[first:] == 0)
    for bad in (dict(temperature=0), dict(top_k=0), dict(steps=-1)):
        with pytest.raises(tn.ConfigError):
            tn.sample(net, [0], **{"steps": 3, **bad})


# ---------------------------------------------------------------- a GPT learns
def test_a_small_gpt_learns_a_sequence_only_attention_can_predict():
    """Each sequence repeats its first 3 random tokens (a b c a b c): positions 3..5 are
    predictable only by looking back 3 places, which needs attention over the past."""
    tn.seed(0)
    gen = np.random.default_rng(0)
    start = gen.integers(1, 7, (256, 3))
    seqs = np.concatenate([np.zeros((256, 1), np.int64), start, start], axis=1)  # 7 tokens
    x, y = seqs[:, :-1], seqs[:, 1:]
    model = tn.Model(gpt(dim=16, heads=2, layers=1), tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-2))
    model.fit(x, y, epochs=25, batch_size=32, seed=0)
    predicted = model.predict(x).argmax(axis=-1)
    assert np.mean(predicted[:, 3:] == y[:, 3:]) > 0.95  # the copied half: learned


@pytest.mark.parametrize("eps", [0, -1e-5, float("nan"), "1e-5"])
def test_layer_norm_refuses_a_bad_eps_with_a_config_error(eps):
    with pytest.raises(tn.ConfigError, match="LayerNorm: eps must be a positive number"):
        tn.LayerNorm(eps=eps)
