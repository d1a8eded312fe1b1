"""Issue 16's generalisation tools: tn.split and fit(validation_split=), AdamW (decoupled weight
decay), the EarlyStopping callback, shift_images and fit(augment=)."""
import numpy as np
import pytest

import tinynn as tn
from tinynn.errors import ConfigError, ShapeError

from conftest_helpers import offline_mnist


# ================================================================ split
def labelled(n=200, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = np.column_stack([np.arange(n), y]).astype(np.float32)  # column 0 names the sample
    return x, y


def test_split_is_a_seeded_shuffled_partition():
    x, y = labelled()
    (xt, yt), (xv, yv) = tn.split(x, y, fraction=0.25, seed=3)
    assert len(xv) == 50 and len(xt) == 150
    ids = np.concatenate([xt[:, 0], xv[:, 0]])
    assert sorted(ids) == list(range(200))                   # every sample once
    assert np.array_equal(xt[:, 1], yt) and np.array_equal(xv[:, 1], yv)  # pairs kept
    assert not np.array_equal(xt[:, 0], np.sort(xt[:, 0]))   # shuffled
    again = tn.split(x, y, fraction=0.25, seed=3)
    assert np.array_equal(again[1][0], xv) and np.array_equal(again[0][0], xt)
    other = tn.split(x, y, fraction=0.25, seed=4)
    assert not np.array_equal(other[1][0], xv)


def test_split_is_stratified_to_one_sample_per_class():
    x, y = labelled(n=1003, classes=7)
    (_, yt), (_, yv) = tn.split(x, y, fraction=0.1, seed=0)
    assert len(yv) == round(0.1 * 1003)
    expected = np.bincount(y) * len(yv) / len(y)
    assert np.all(np.abs(np.bincount(yv, minlength=7) - expected) < 1)
    (_, _), (_, yv_plain) = tn.split(x, y, fraction=0.1, seed=0, stratify=False)
    assert len(yv_plain) == len(yv)


def longest_run(labels):
    """The length of the longest stretch of equal consecutive labels."""
    edges = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    return int(np.diff(np.concatenate([[0], edges, [len(labels)]])).max())


def assert_head_looks_shuffled(labels, shares, what, head=1000):
    """The first ``head`` labels of a part look like a random draw with these class ``shares``.

    A random order (a random subset of the part, so without replacement: tighter than the
    bounds below, computed for independent draws) fails each test with probability < 2e-6:
    - a run of ``limit`` equal labels: at most head · Σ_c p_c^limit (a union bound over the
      starting positions); ``limit`` is the shortest run for which that is below 2e-6: 10 for
      MNIST's shares (1.15e-6) and for 10 equal classes (1.0e-6);
    - a class count more than 5.5 standard deviations from head · p_c: the binomial tails,
      summed over the 10 classes, are 1.2e-6 (MNIST's shares) and 1.0e-6 (10 equal classes).
    Before the fix the training part of a stratified split started with the classes whose
    validation quota ran out first: MNIST, seed 0, fraction 0.1: 26 fives, counts 81 to 135."""
    first = labels[:head]
    limit = next(n for n in range(2, head) if head * np.sum(shares ** n) < 2e-6)
    assert longest_run(first) < limit, f"{what}: {longest_run(first)} equal labels in a row"
    counts = np.bincount(first, minlength=len(shares))
    sigma = np.sqrt(head * shares * (1 - shares))
    z = (counts - head * shares) / sigma
    assert np.all(np.abs(z) < 5.5), f"{what}: class counts {counts} in the first {head} (z {z})"


def assert_split_parts_look_shuffled(y, seeds, fractions):
    shares = np.bincount(y) / len(y)
    for seed in seeds:
        for fraction in fractions:
            (_, y_train), (_, y_val) = tn.split(np.arange(len(y)), y, fraction, seed=seed)
            for name, part in (("training part", y_train), ("validation part", y_val)):
                assert_head_looks_shuffled(part, shares, f"seed {seed}, fraction {fraction:.3g}, "
                                                         f"{name}")
            again = tn.split(np.arange(len(y)), y, fraction, seed=seed)     # still deterministic
            assert np.array_equal(again[0][1], y_train) and np.array_equal(again[1][1], y_val)


def test_both_parts_of_a_stratified_split_come_out_in_random_order():
    y = np.random.default_rng(0).integers(0, 10, 20000)
    assert_split_parts_look_shuffled(y, seeds=(0, 1, 2), fractions=(0.1, 0.3, 0.5))


def test_both_parts_of_a_stratified_split_of_mnist_come_out_in_random_order(monkeypatch):
    """Notebook 08's 1,000-digit subset is the head of tn.split(MNIST, 0.1, seed=0)'s training
    part; notebook 06 holds out 1/60."""
    (_, y), _ = offline_mnist(monkeypatch)
    assert_split_parts_look_shuffled(y, seeds=(0, 1, 2), fractions=(0.1, 1 / 60))


def test_split_works_for_float_targets_and_leaves_inputs_alone():
    x = np.arange(20.0).reshape(10, 2)
    y = np.linspace(0, 1, 10)
    before = x.copy()
    (xt, yt), (xv, yv) = tn.split(x, y, 0.3)
    assert len(xv) == 3 and np.array_equal(x, before)
    assert sorted(np.concatenate([yt, yv])) == sorted(y)


@pytest.mark.parametrize("fraction, words", [(0, "in (0, 1)"), (1, "in (0, 1)"), (-0.1, "in (0, 1)"),
                                             (1.5, "in (0, 1)"), (float("nan"), "in (0, 1)"),
                                             ("0.1", "in (0, 1)"), (0.001, "no validation sample"),
                                             (0.999, "no training sample")])
def test_split_refuses_bad_fractions_clearly(fraction, words):
    x, y = labelled(n=100)
    with pytest.raises(ConfigError, match="fraction") as info:
        tn.split(x, y, fraction)
    assert words in str(info.value)


def test_split_refuses_mismatched_lengths():
    with pytest.raises(ShapeError, match="same number of samples"):
        tn.split(np.zeros((10, 2)), np.zeros(9), 0.2)


def small_model(seed=0, optimizer=None, dropout=0.0):
    tn.seed(seed)
    layers = [tn.Dense(16), tn.ReLU()] + ([tn.Dropout(dropout)] if dropout else []) + [tn.Dense(3)]
    return tn.Model(tn.Net(layers), tn.SoftmaxCrossEntropy(), optimizer or tn.Adam(lr=0.01))


def test_validation_split_holds_out_the_last_part():
    x, y = tn.spirals(100, seed=0)
    a = small_model().fit(x, y, epochs=2, batch_size=16, seed=0, validation_split=0.2)
    b = small_model().fit(x[:80], y[:80], epochs=2, batch_size=16, seed=0,
                          validation=(x[80:], y[80:]))
    assert a["val_loss"] == b["val_loss"] and a["loss"] == b["loss"]


@pytest.mark.parametrize("kwargs, words", [({"validation_split": 1.0}, "validation_split"),
                                           ({"validation_split": 0.001}, "no validation sample"),
                                           ({"validation_split": 0.2, "validation": "both"}, "not both")])
def test_validation_split_errors(kwargs, words):
    x, y = tn.spirals(100, seed=0)
    if kwargs.get("validation") == "both":
        kwargs["validation"] = (x, y)
    with pytest.raises(ConfigError, match=words):
        small_model().fit(x, y, **kwargs)


# ================================================================ AdamW
def adamw_by_the_book(theta, grads, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    """PyTorch's documented AdamW, written out independently: θ ← θ − γλθ, then Adam with g."""
    theta = theta.copy()
    m, v, out = np.zeros_like(theta), np.zeros_like(theta), []
    for t, g in enumerate(grads, 1):
        theta = theta - lr * wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        out.append(theta.copy())
    return out


def adam_l2_by_the_book(theta, grads, lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    theta = theta.copy()
    m, v, out = np.zeros_like(theta), np.zeros_like(theta), []
    for t, g in enumerate(grads, 1):
        g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        theta = theta - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        out.append(theta.copy())
    return out


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.05, 0.3])
def test_adamw_matches_the_published_rule_step_by_step(fast, wd):
    rng = np.random.default_rng(0)
    start = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) * 10 ** rng.uniform(-2, 1) for _ in range(8)]
    opt = tn.AdamW(lr=0.05, weight_decay=wd)
    opt.fast = fast
    theta = start.copy()
    for step, (g, expected) in enumerate(zip(grads, adamw_by_the_book(start, grads, 0.05, wd)), 1):
        opt.step([theta], [g.copy()])
        np.testing.assert_allclose(theta, expected, rtol=1e-12, atol=1e-14, err_msg=f"step {step}")
    l2 = tn.Adam(lr=0.05, weight_decay=wd)
    l2.fast = fast
    theta_l2 = start.copy()
    for g, expected in zip(grads, adam_l2_by_the_book(start, grads, 0.05, wd)):
        l2.step([theta_l2], [g.copy()])
        np.testing.assert_allclose(theta_l2, expected, rtol=1e-12, atol=1e-14)
    if wd:
        assert np.abs(theta - theta_l2).max() > 1e-3   # decoupled decay is not Adam + L2
    else:
        np.testing.assert_allclose(theta, theta_l2, rtol=1e-12)  # without decay both are Adam


def test_adamw_fast_and_textbook_paths_agree_in_float32():
    rng = np.random.default_rng(1)
    start = rng.standard_normal(50).astype(np.float32)
    grads = [rng.standard_normal(50).astype(np.float32) for _ in range(20)]
    results = []
    for fast in (True, False):
        opt, theta = tn.AdamW(lr=1e-2, weight_decay=0.1), start.copy()
        opt.fast = fast
        for g in grads:
            opt.step([theta], [g])
        results.append(theta)
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-7)


def test_adamw_decays_every_weight_by_the_same_fraction_adam_l2_does_not():
    """With zero gradients the Adam step vanishes and AdamW shrinks θ by (1 − ηλ) per step."""
    theta = np.array([1.0, -2.0, 4.0])
    opt = tn.AdamW(lr=0.1, weight_decay=0.5)
    for _ in range(3):
        opt.step([theta], [np.zeros(3)])
    np.testing.assert_allclose(theta, np.array([1.0, -2.0, 4.0]) * 0.95 ** 3)


def test_adamw_defaults_repr_and_registry_and_grad_untouched():
    opt = tn.AdamW()
    assert opt.weight_decay == 0.01 and opt.lr == 1e-3 and isinstance(opt, tn.Adam)
    assert repr(opt) == "AdamW(lr=0.001, weight_decay=0.01)"
    assert isinstance(tn.optimizers.get("adamw", lr=0.1), tn.AdamW)
    g = np.ones(2)
    tn.AdamW(lr=0.1, weight_decay=0.1).step([np.ones(2)], [g])
    assert np.array_equal(g, np.ones(2))
    with pytest.raises(ConfigError, match="weight_decay"):
        tn.AdamW(weight_decay=-1)


def test_adamw_follows_a_schedule_in_its_decay():
    theta = np.array([1.0])
    opt = tn.AdamW(lr=tn.StepDecay(0.1, step_size=1, gamma=0.5), weight_decay=1.0)
    for _ in range(3):
        opt.step([theta], [np.zeros(1)])
    np.testing.assert_allclose(theta, [(1 - 0.1) * (1 - 0.05) * (1 - 0.025)])


# ================================================================ EarlyStopping
def overfitting_setup():
    """Noisy labels, few samples, a wide net: validation loss falls, then rises."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    flip = rng.random(60) < 0.3
    y[flip] = 1 - y[flip]
    xv = rng.standard_normal((400, 5)).astype(np.float32)
    yv = (xv[:, 0] > 0).astype(np.int64)
    tn.seed(0)
    net = tn.Net([tn.Dense(128), tn.ReLU(), tn.Dense(128), tn.ReLU(), tn.Dense(2)])
    return tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=0.01)), x, y, (xv, yv)


class Snapshots(tn.Callback):
    def __init__(self):
        self.states = []

    def on_epoch_end(self, model, epoch, logs):
        self.states.append(model.net.state_dict())


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best_weights():
    model, x, y, val = overfitting_setup()
    full = model.fit(x, y, epochs=40, batch_size=20, seed=0, validation=val)
    losses = np.array(full["val_loss"])
    best = int(np.argmin(losses))
    assert best < 30, "the setup must overfit"
    patience = 4
    # the first epoch that is `patience` epochs after the best so far, with no improvement since
    running_best, since, expected_stop = np.inf, 0, None
    for epoch, value in enumerate(losses):
        if value < running_best:
            running_best, since = value, 0
        else:
            since += 1
            if since == patience:
                expected_stop = epoch
                break
    assert expected_stop is not None

    model, x, y, val = overfitting_setup()
    snapshots, stopper = Snapshots(), tn.EarlyStopping(patience=patience)
    history = model.fit(x, y, epochs=40, batch_size=20, seed=0, validation=val,
                        callbacks=[snapshots, stopper])
    assert len(history["val_loss"]) == expected_stop + 1
    assert history["val_loss"] == full["val_loss"][:expected_stop + 1]
    assert stopper.stopped_epoch == expected_stop
    best_here = int(np.argmin(history["val_loss"]))
    assert stopper.best_epoch == best_here and stopper.best == history["val_loss"][best_here]
    assert history["stopped"].startswith(
        f"stopped early: val_loss did not improve for {patience} epochs")
    assert f"best in epoch {best_here + 1}" in history["stopped"]
    restored = model.net.state_dict()
    for key, value in snapshots.states[best_here].items():     # bit-identical
        assert restored[key].tobytes() == value.tobytes(), key
    assert model.evaluate(*val)["loss"] == history["val_loss"][best_here]


def test_early_stopping_restores_layer_state_too():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 4)).astype(np.float32), rng.integers(0, 2, 64)
    tn.seed(0)
    net = tn.Net([tn.Dense(8), tn.BatchNorm(), tn.ReLU(), tn.Dense(2)])
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=0.05))
    snapshots, stopper = Snapshots(), tn.EarlyStopping(monitor="loss", patience=100)
    model.fit(x, y, epochs=6, batch_size=16, seed=0, callbacks=[snapshots, stopper])
    state_keys = [k for k in snapshots.states[0] if k.startswith("state.")]
    assert state_keys and stopper.stopped_epoch is None
    for key in state_keys:
        assert net.state_dict()[key].tobytes() == snapshots.states[stopper.best_epoch][key].tobytes()


def test_early_stopping_without_restore_keeps_the_last_weights_and_min_delta_counts():
    model, x, y, val = overfitting_setup()
    snapshots = Snapshots()
    stopper = tn.EarlyStopping(patience=2, min_delta=10.0, restore_best_weights=False)
    history = model.fit(x, y, epochs=10, batch_size=20, seed=0, validation=val,
                        callbacks=[snapshots, stopper])
    # nothing beats the first epoch by 10: stop after epoch 3, keep epoch 3's weights
    assert len(history["loss"]) == 3 and stopper.best_epoch == 0
    last = model.net.state_dict()
    assert all(last[k].tobytes() == v.tobytes() for k, v in snapshots.states[-1].items())


def test_early_stopping_on_accuracy_maximises():
    stopper = tn.EarlyStopping(monitor="val_accuracy")
    assert stopper.mode == "max"
    assert tn.EarlyStopping(monitor="val_loss").mode == "min"


def test_early_stopping_names_a_missing_monitor():
    model, x, y, val = overfitting_setup()
    with pytest.raises(ConfigError, match="'val_loss' is not among .*validation="):
        model.fit(x, y, epochs=2, callbacks=[tn.EarlyStopping()])
    with pytest.raises(ConfigError, match="'val_los' is not among"):
        model.fit(x, y, epochs=2, validation=val, callbacks=[tn.EarlyStopping(monitor="val_los")])


@pytest.mark.parametrize("kwargs, words", [({"patience": 0}, "patience"), ({"min_delta": -1}, "min_delta"),
                                           ({"mode": "up"}, "mode")])
def test_early_stopping_refuses_bad_settings(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        tn.EarlyStopping(**kwargs)


# ================================================================ augmentation
def test_shift_images_moves_each_image_by_at_most_max_shift_with_zeros_shifted_in():
    images = np.zeros((200, 7, 7), dtype=np.float32)
    images[:, 3, 3] = 1.0
    shifted = tn.shift_images(images, max_shift=2, seed=0)
    assert shifted.shape == images.shape and shifted.dtype == np.float32
    positions = np.array([np.argwhere(s)[0] for s in shifted])
    assert np.all(shifted.sum(axis=(1, 2)) == 1)               # the dot moved, nothing else
    offsets = positions - 3
    assert np.abs(offsets).max() == 2
    assert len({tuple(o) for o in offsets}) == 25               # all 5 × 5 shifts occur
    assert np.array_equal(tn.shift_images(images, 2, seed=0), shifted)  # seeded


def test_shift_images_direction_and_edges():
    image = np.arange(1, 17, dtype=np.float64).reshape(1, 4, 4)
    gen_seed = next(s for s in range(100)
                    if tuple(np.random.default_rng(s).integers(-1, 2, size=(1, 2))[0]) == (1, -1))
    out = tn.shift_images(image, 1, seed=gen_seed)[0]
    expected = np.zeros((4, 4))
    expected[1:, :3] = image[0, :3, 1:]      # down one row, left one column
    assert np.array_equal(out, expected)


def test_shift_images_accepts_flat_and_channel_images():
    flat = np.random.default_rng(0).random((5, 784)).astype(np.float32)
    out = tn.shift_images(flat, 1, seed=1)
    assert out.shape == (5, 784) and np.array_equal(tn.shift_images(flat, 0), flat)
    assert tn.shift_images(np.ones((2, 6, 6, 3)), 1, seed=0).shape == (2, 6, 6, 3)
    with pytest.raises(ShapeError, match="square"):
        tn.shift_images(np.zeros((2, 10)), 1)
    with pytest.raises(ConfigError, match="max_shift"):
        tn.shift_images(np.zeros((2, 4, 4)), 4)


def test_fit_augment_changes_training_batches_only():
    x, y = tn.spirals(90, seed=0)
    seen = []

    def augment(xb):
        seen.append(len(xb))
        return xb + np.float32(0.0)

    plain = small_model().fit(x, y, epochs=2, batch_size=30, seed=0, validation=(x, y))
    hooked = small_model().fit(x, y, epochs=2, batch_size=30, seed=0, validation=(x, y),
                               augment=augment)
    assert seen == [30] * 6 and hooked["val_loss"] == plain["val_loss"]
    with pytest.raises(ConfigError, match="augment must return"):
        small_model().fit(x, y, augment=lambda xb: xb[:, :1])
    with pytest.raises(ConfigError, match="augment must be a function"):
        small_model().fit(x, y, augment="shift")
