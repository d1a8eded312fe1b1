"""Notebook 13 (language models): ``check_bigram_optimum`` and ``check_embedding_backward``, and
the exercises bigram_optimum and embedding_backward.

Each check builds a small input whose right answer is known (a count table with rows of different
totals; ids with repeats) and names the mistake a wrong answer reveals.
"""
import numpy as np

from ...sequence import Embedding
from .compare import _first_mismatch
from .core import SEED, Failed, NotDone, _name, _run
from .spec import Exercise, visible_defaults


def _log_probs(logits):
    """Row-wise log-softmax of a table of logits (float64)."""
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _counts(rng, vocab):
    """A count table with rows of different totals, some zero cells, no empty row."""
    counts = rng.integers(0, 9, (vocab, vocab)) * rng.integers(1, 5, (vocab, 1))
    counts[np.arange(vocab), rng.integers(0, vocab, vocab)] += 1
    return counts.astype(np.int64)


@visible_defaults
def check_bigram_optimum(candidate, *, vocab=5, smoothing=(0, 1), seed=SEED):
    """Check ``my_bigram_optimum(counts, smoothing=0) -> logits``: the (V, V) logits table whose
    row-wise softmax is the normalised (count + smoothing) table — the table that minimises the
    bigram net's training NLL. Any constant per row is allowed (softmax does not see it)."""
    def run():
        rng = np.random.default_rng(seed)
        counts = _counts(rng, vocab)
        for alpha in smoothing:
            given = counts.copy()
            result = candidate(given, smoothing=alpha) if alpha else candidate(given)
            if result is None:
                raise NotDone("my_bigram_optimum returned None — `return` the logits table")
            if not np.array_equal(given, counts):
                raise Failed("changed the counts in place: compute a new array")
            result = np.asarray(result, dtype=np.float64)
            if result.shape != counts.shape:
                raise Failed(f"returned shape {result.shape}, expected {counts.shape}: one row "
                             "of logits per previous character")
            smoothed = counts + alpha
            expected = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))
            finite = np.isfinite(expected)
            if np.all(np.isfinite(result)) and np.allclose(result, np.exp(expected), atol=1e-6):
                raise Failed("returned probabilities, not logits: the net's softmax exponentiates"
                             " — take the log")
            if not np.array_equal(np.isfinite(result), finite):
                if alpha and not np.all(np.isfinite(result)):
                    raise Failed(f"with smoothing={alpha} some logits are -inf: add the "
                                 "smoothing to every count before normalising")
                raise Failed("a never-seen pair must get logit -inf (probability 0) when "
                             "smoothing is 0, and only those")
            got = _log_probs(np.where(finite, result, -np.inf))
            if np.allclose(got, expected, atol=1e-6):
                continue
            columns = smoothed / smoothed.sum(axis=0, keepdims=True)
            if np.allclose(got, _log_probs(np.log(columns)), atol=1e-6):
                raise Failed("normalised over the wrong axis (columns): row i is the previous "
                             "character, so each ROW must sum to 1 — sum over axis=1")
            if alpha:
                bare = np.log(np.maximum(counts, 1e-300) / counts.sum(axis=1, keepdims=True))
                if np.allclose(got, _log_probs(bare), atol=1e-6):
                    raise Failed(f"ignored smoothing={alpha}: add it to every count first")
            raise Failed("softmax(logits) row by row is not the normalised count table"
                         + _first_mismatch(np.exp(got), np.exp(expected)))
        return "softmax of each row is the normalised (smoothed) count table"
    return _run(_name(candidate), run, seed)


@visible_defaults
def check_embedding_backward(candidate, reference, *, batch=3, time=4, num_embeddings=6, dim=5,
                             seed=SEED):
    """Check ``my_embedding_backward(ids, grad_out, num_embeddings) -> dW``: the gradient of the
    loss with respect to the table, (num_embeddings, dim), on ids (batch, time) with repeats,
    against ``reference`` (tinynn's Embedding) and a numerical derivative."""
    def run():
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, num_embeddings - 1, (batch, time))   # the last row is never used
        ids[0, :2] = ids[-1, -1]                                   # a repeated id, surely
        grad_out = rng.standard_normal((batch, time, dim))
        given_ids, given_grad = ids.copy(), grad_out.copy()
        result = candidate(given_ids, given_grad, num_embeddings)
        if result is None:
            raise NotDone("my_embedding_backward returned None — `return dW`")
        if not (np.array_equal(given_ids, ids) and np.array_equal(given_grad, grad_out)):
            raise Failed("changed its inputs in place: build a new array for dW")
        result = np.asarray(result, dtype=np.float64)
        layer = reference(num_embeddings, dim, dtype=np.float64)
        layer.forward(ids)
        layer.backward(grad_out)
        expected = layer.grads["w"]
        if result.shape != expected.shape:
            if result.shape == expected.shape[::-1]:
                raise Failed(f"returned shape {result.shape}, the transpose: dW has the table's "
                             f"shape (num_embeddings, dim) = {expected.shape}")
            raise Failed(f"returned shape {result.shape}, expected {expected.shape}: one row "
                         "of dW per row of the table, summed over the batch and time")
        if np.allclose(result, expected, atol=1e-9):
            return "dW matches tinynn's Embedding: repeated ids add their gradients"
        flat_ids, flat_grad = ids.reshape(-1), grad_out.reshape(-1, dim)
        assigned = np.zeros_like(expected)
        assigned[flat_ids] = flat_grad
        if np.allclose(result, assigned, atol=1e-9):
            raise Failed("a repeated id kept only ONE of its gradients: dW[ids] = grad "
                         "overwrites. Every use of a row adds to its gradient — accumulate")
        counts = np.bincount(flat_ids, minlength=num_embeddings)[:, None]
        if np.allclose(result, expected / np.maximum(counts, 1), atol=1e-9):
            raise Failed("averaged the gradients of a repeated id: the loss sums over every "
                         "position, so the gradients add")
        if np.allclose(result, expected / (batch * time), atol=1e-9) or \
                np.allclose(result, expected / batch, atol=1e-9):
            raise Failed("divided by the number of positions: grad_out already carries the "
                         "loss's mean — just add the rows")
        first = np.zeros_like(expected)
        np.add.at(first, ids[0], grad_out[0])
        if np.allclose(result, first, atol=1e-9) or np.allclose(result, first * batch, atol=1e-9):
            raise Failed("used only the first sequence of the batch: sum over every (b, t)")
        if np.any(result[num_embeddings - 1] != 0):
            raise Failed("a row no id uses got a gradient: it was never looked up, so dW for it "
                         "is 0")
        raise Failed("dW differs from the gradient" + _first_mismatch(result, expected))
    return _run(_name(candidate), run, seed)


BIGRAM_OPTIMUM = Exercise(
    "bigram_optimum", ("my_bigram_optimum",), check_bigram_optimum,
    trials=dict(vocab=5, smoothing=(0, 1)), hidden=dict(vocab=8, smoothing=(0, 2)))
EMBEDDING_BACKWARD = Exercise(
    "embedding_backward", ("my_embedding_backward",), check_embedding_backward,
    reference=Embedding,
    trials=dict(batch=3, time=4, num_embeddings=6, dim=5),
    hidden=dict(batch=4, time=7, num_embeddings=9, dim=3))
EXERCISES = (BIGRAM_OPTIMUM, EMBEDDING_BACKWARD)
