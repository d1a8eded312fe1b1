"""Notebook 06 (MNIST with an MLP): ``check_he_init``, and the exercises he_normal and
confusion_matrix (checked by ``check_function``).

    check_he_init(my_he_normal)   # my_he_normal(shape, dtype) -> array

He initialisation is random, so it is checked statistically: on a few hundred thousand seeded
draws the standard deviation must be √(2/fan_in), and the classic mistakes (1/fan_in, Xavier,
fan_out, the variance as the std, a uniform bound as the std) are named by the std they give.
"""
import numpy as np

from ... import random as tn_random
from ...initializers import he_normal
from ...metrics import confusion_matrix
from .core import SEED, Failed, NotDone, _name, _run
from .n00_overview import _logits, check_function
from .spec import Call, Exercise, visible_defaults

HE_SHAPES = [(400, 1000), (1000, 250)]   # (fan_in, fan_out): 400,000 and 250,000 draws each
HE_TOLERANCE = 0.03                      # relative; a sample std of 250,000 draws is within 0.2 %


def _he_candidates(fan_in, fan_out):
    """(name, std, uniform?, diagnosis) of He normal and of the classic mistakes."""
    he = np.sqrt(2.0 / fan_in)
    return [
        ("he", he, False, None),
        ("he_uniform", he, True,
         "has the right variance 2/fan_in, but the values are uniformly distributed (that is "
         "He *uniform*, tn.initializers.he_uniform); the exercise asks for a normal "
         "distribution: rng.standard_normal(shape) * std"),
        ("bound_as_std", np.sqrt(2.0 / fan_in / 3.0), True,
         "draws uniform(-a, a) with a = √(2/fan_in), the std used as the bound: uniform(-a, a) "
         "has variance a²/3, so its std is a/√3, too small. Draw from a normal distribution with "
         "std √(2/fan_in)"),
        ("std_as_bound", np.sqrt(6.0 / fan_in), False,
         "uses √(6/fan_in), He *uniform*'s bound, as the std of a normal distribution: the "
         "bound a of uniform(-a, a) is √3 times its std. For a normal draw, std = √(2/fan_in)"),
        ("lecun", np.sqrt(1.0 / fan_in), False,
         "has variance 1/fan_in (LeCun's initialisation, right for linear or tanh units): a ReLU "
         "zeroes half of its inputs, which halves E[h²], so He doubles it: Var(w) = 2/fan_in"),
        ("xavier", np.sqrt(2.0 / (fan_in + fan_out)), False,
         "has variance 2/(fan_in + fan_out): that is Xavier/Glorot's compromise between the "
         "forward and the backward pass; He keeps the forward signal through ReLUs: "
         "Var(w) = 2/fan_in"),
        ("fan_out", np.sqrt(2.0 / fan_out), False,
         "uses fan_out (shape[1], the number of units) instead of fan_in (shape[0], the number "
         "of inputs): each output sums fan_in products, so Var(w) = 2/fan_in"),
        ("std_is_variance", 2.0 / fan_in, False,
         "has std 2/fan_in, but 2/fan_in is the VARIANCE: the std is its square root, "
         "√(2/fan_in) (np.sqrt)"),
        ("no_scale", 1.0, False,
         "has std 1: multiply the standard normal draws by std = √(2/fan_in)"),
    ]


@visible_defaults
def check_he_init(candidate, *, shapes=HE_SHAPES, seed=SEED):
    """Check ``my_he_normal(shape, dtype) -> array``: normal, mean 0, std √(2/fan_in) with
    fan_in = shape[0], the requested shape and dtype, drawn from tinynn's seeded generator.
    Compared statistically on the seeded draws of ``shapes`` (by default 400,000 and 250,000);
    the classic mistakes (1/fan_in,
    Xavier, fan_out, std = 2/fan_in, uniform bound vs std) are named."""
    def run():
        for shape in shapes:
            _he_trial(candidate, shape)
        tn_random.seed(seed)
        first = np.asarray(candidate((30, 20), np.float32))
        tn_random.seed(seed)
        again = np.asarray(candidate((30, 20), np.float32))
        if not np.array_equal(first, again):
            raise Failed("two calls after the same tn.seed(0) gave different weights: draw from "
                         "tinynn's generator, tn.random.rng(), not np.random, so that a seeded "
                         "run is reproducible")
        fan_in = shapes[0][0]
        return (f"std √(2/fan_in) (e.g. {np.sqrt(2 / fan_in):.4f} for fan_in = {fan_in}), mean 0, "
                f"normal, on {len(shapes)} shapes; right shape and dtype; reproducible")
    return _run(_name(candidate), run, seed)


def _he_trial(candidate, shape):
    fan_in, fan_out = shape
    result = None
    for dtype in (np.float32, np.float64):
        result = candidate(shape, dtype)
        if result is None:
            raise NotDone("returned None — `return` the array of weights")
        if not isinstance(result, np.ndarray):
            raise Failed(f"returned {type(result).__name__}, expected a numpy array")
        if result.shape != tuple(shape):
            raise Failed(f"for shape {shape} returned shape {result.shape}: pass `shape` to the "
                         "generator, e.g. rng.standard_normal(shape)")
        if result.dtype != dtype:
            raise Failed(f"asked for dtype {np.dtype(dtype).name}, returned "
                         f"{result.dtype.name}: finish with .astype(dtype)")
    w = result.astype(np.float64).ravel()
    if not np.all(np.isfinite(w)):
        raise Failed("the weights contain NaN or inf")
    mean, std = float(w.mean()), float(w.std())
    if std <= 1e-12 * max(abs(mean), 1.0):
        raise Failed("all weights are equal: draw them at random (rng.standard_normal)")
    if abs(mean) > 0.02 * std + 1e-12 and abs(mean) > 5 * std / np.sqrt(w.size):
        raise Failed(f"the mean of the weights is {mean:.3g}, not 0 (std {std:.3g}): draw from a "
                     "distribution centred at 0 (standard_normal, not random() in [0, 1))")
    kurtosis = float(np.mean((w - mean) ** 4) / std ** 4)   # normal 3, uniform 1.8
    uniform = kurtosis < 2.4
    matches = [c for c in _he_candidates(fan_in, fan_out)
               if c[2] == uniform and abs(std / c[1] - 1) < HE_TOLERANCE]
    if matches and matches[0][0] == "he":
        return
    if matches:
        raise Failed(f"for shape {shape} (fan_in {fan_in}, fan_out {fan_out}) it "
                     f"{matches[0][3]}")
    kind = "uniformly distributed" if uniform else "normal"
    raise Failed(f"for shape {shape} (fan_in {fan_in}, fan_out {fan_out}) the weights are {kind} "
                 f"with std {std:.4g}; He normal has std √(2/fan_in) = {np.sqrt(2 / fan_in):.4g}"
                 f" (ratio {std / np.sqrt(2 / fan_in):.3g})")


HE_NORMAL = Exercise(
    "he_normal", ("my_he_normal",), check_he_init, forbidden=(he_normal,),
    trials=dict(shapes=HE_SHAPES), hidden=dict(shapes=[(500, 800), (800, 300)]))
CONFUSION_MATRIX = Exercise(
    "confusion_matrix", ("my_confusion_matrix",), check_function, reference=confusion_matrix,
    calls=lambda rng: [Call(args=(*_logits(rng, 60, 7), 7))])
EXERCISES = (HE_NORMAL, CONFUSION_MATRIX)
