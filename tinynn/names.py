"""Names as data for a character-level language model (notebooks 13 and 14).

A language model predicts the next character from the ones before it. To train one on names we
need four things, each a few lines here:

    vocabulary    characters ↔ integer ids; '.' (id 0) marks where a name starts and ends
    split         a seeded train / validation split of the names (never tune on the test data)
    windows       every (context → next character) pair of every name, as integer arrays
    held_out_nll  the average negative log-likelihood per character on names the model never saw

The NLL per character is the number language models are compared by: a model that knows nothing
scores log(27) ≈ 3.30 nats; the bigram count table about 2.45 on held-out names.
"""
import numpy as np

from .checks import check_int, check_number
from .functional import log_softmax

BOUNDARY = "."


class Vocabulary:
    """The characters of a list of names, sorted, after the boundary token '.' (id 0).

    ``encode("emma")`` → array([5, 13, 13, 1]); ``decode([5, 13, 13, 1, 0])`` → "emma." ."""

    def __init__(self, names):
        letters = sorted(set("".join(names)))
        if BOUNDARY in letters:
            raise ValueError(f"Vocabulary: the names contain {BOUNDARY!r}, the boundary token")
        self.chars = [BOUNDARY] + letters
        self.ids = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        """The ids of the characters of ``text`` (int64 array)."""
        unknown = sorted(set(text) - set(self.ids))
        if unknown:
            raise ValueError(f"Vocabulary.encode: {unknown} are not in the vocabulary "
                             f"{''.join(self.chars)!r}")
        return np.array([self.ids[c] for c in text], dtype=np.int64)

    def decode(self, ids):
        """The string the ids stand for."""
        return "".join(self.chars[i] for i in np.asarray(ids).ravel())

    def __repr__(self):
        return f"Vocabulary({''.join(self.chars)!r})"


def split(names, validation=0.1, seed=0):
    """Shuffle the names with their own generator (``seed``) and cut off the last ``validation``
    fraction: (train, validation), two lists. The same seed gives the same split on every
    machine, whatever else has drawn random numbers."""
    validation = check_number(validation, "validation", "names.split", "(0, 1)")
    order = np.random.default_rng(seed).permutation(len(names))
    cut = len(names) - int(round(validation * len(names)))
    return [names[i] for i in order[:cut]], [names[i] for i in order[cut:]]


def windows(names, vocab, context, every_position=False):
    """Every prediction the names hold, as arrays of ids: for each character of ``name + '.'``,
    the ``context`` characters before it (padded on the left with '.') and the character itself.

        "emma", context 3:   ... → e,  ..e → m,  .em → m,  emm → a,  mma → .

    Returns x (N, context) and y (N,). With ``every_position=True`` y is (N, context): the
    character after *each* position of the window (x shifted left by one, then the target), so a
    causal model (a GPT) learns from every position at once."""
    context = check_int(context, "context", "names.windows")
    pad = np.zeros(context, dtype=np.int64)
    xs, ys = [], []
    for name in names:
        ids = np.concatenate([pad, vocab.encode(name), [0]])
        for end in range(context, len(ids)):
            xs.append(ids[end - context:end])
            ys.append(ids[end - context + 1:end + 1] if every_position else ids[end])
    return np.array(xs, dtype=np.int64), np.array(ys, dtype=np.int64)


def held_out_nll(net, x, y, batch_size=4096):
    """The mean negative log-likelihood, in nats per character, that ``net`` (a Net or Model
    giving logits (N, V), or (N, T, V) of which the last position is scored) gives the
    characters ``y`` (N,) after the windows ``x``. Inference mode: dropout off."""
    net = getattr(net, "net", net)
    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = net.forward(x[start:start + batch_size], training=False)
        logits = logits[:, -1] if logits.ndim == 3 else logits
        logp = log_softmax(logits.astype(np.float64), axis=1)
        targets = y[start:start + batch_size]
        targets = targets[:, -1] if targets.ndim == 2 else targets  # every_position windows
        total -= logp[np.arange(len(targets)), targets].sum()
    return total / len(x)


def bigram_nll(train, validation, vocab, smoothing=1.0):
    """The baseline every model must beat: the held-out NLL per character of the bigram count
    table. P(next | current) = (count of the pair in ``train`` + ``smoothing``) / its row's sum,
    scored on every character of ``validation`` (``'.'`` before each name, after it too)."""
    smoothing = check_number(smoothing, "smoothing", "names.bigram_nll", "[0, inf)")
    x, y = windows(train, vocab, 1)
    counts = np.full((len(vocab), len(vocab)), smoothing)
    np.add.at(counts, (x[:, 0], y), 1)
    log_p = np.log(counts / counts.sum(axis=1, keepdims=True))
    x, y = windows(validation, vocab, 1)
    return -log_p[x[:, 0], y].mean()


def fit_steps(model, x, y, steps, batch_size=32, callbacks=(), seed=0):
    """``model.fit`` for a number of *steps* rather than epochs: ``steps`` batches of
    ``batch_size`` windows, drawn without replacement by a generator of its own (``seed``) and
    reshuffled whenever the windows run out. A fixed budget of steps compares models of any
    data size alike. Returns fit's history."""
    steps = check_int(steps, "steps", "names.fit_steps")
    batch_size = check_int(batch_size, "batch_size", "names.fit_steps")
    gen, needed = np.random.default_rng(seed), steps * batch_size
    order = np.concatenate([gen.permutation(len(x)) for _ in range(-(-needed // len(x)))])
    order = order[:needed]
    return model.fit(x[order], y[order], epochs=1, batch_size=batch_size, shuffle=False,
                     callbacks=callbacks)
