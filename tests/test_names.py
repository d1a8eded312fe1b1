"""tinynn.names: the vocabulary, the seeded split, the context windows and the held-out NLL."""
import numpy as np
import pytest

import tinynn as tn
from tinynn import names as nm


NAMES = ["emma", "ava", "bo"]


def test_vocabulary_round_trip_and_boundary_id():
    vocab = nm.Vocabulary(NAMES)
    assert vocab.chars == [".", "a", "b", "e", "m", "o", "v"]
    assert vocab.encode("emma").tolist() == [3, 4, 4, 1]
    assert vocab.decode([3, 4, 4, 1, 0]) == "emma."


def test_vocabulary_names_unknown_characters():
    with pytest.raises(ValueError, match=r"\['z'\]"):
        nm.Vocabulary(NAMES).encode("zoe")


def test_windows_are_the_context_and_next_character_of_every_position():
    vocab = nm.Vocabulary(NAMES)
    x, y = nm.windows(["emma"], vocab, 3)
    assert [vocab.decode(w) + "→" + vocab.decode([t]) for w, t in zip(x, y)] == [
        "...→e", "..e→m", ".em→m", "emm→a", "mma→."]
    x2, y2 = nm.windows(NAMES, vocab, 3, every_position=True)
    assert len(x2) == sum(len(n) + 1 for n in NAMES)
    np.testing.assert_array_equal(y2[:, :-1], x2[:, 1:])
    np.testing.assert_array_equal(y2[:, -1], nm.windows(NAMES, vocab, 3)[1])


def test_split_is_seeded_disjoint_and_complete():
    names = [f"n{i}" for i in range(100)]
    train, val = nm.split(names, validation=0.2, seed=3)
    assert (len(train), len(val)) == (80, 20)
    assert sorted(train + val) == sorted(names)
    tn.seed(123)  # tinynn's generator does not influence the split
    assert nm.split(names, validation=0.2, seed=3) == (train, val)
    assert nm.split(names, validation=0.2, seed=4) != (train, val)


def test_held_out_nll_of_a_uniform_model_is_log_vocab_size():
    vocab = nm.Vocabulary(NAMES)
    x, y = nm.windows(NAMES, vocab, 2)
    net = tn.Net([tn.Embedding(len(vocab), 4), tn.Flatten(), tn.Dense(len(vocab))])
    net.forward(x)
    for layer in net.layers:
        for p in layer.params.values():
            p[...] = 0
    assert nm.held_out_nll(net, x, y, batch_size=5) == pytest.approx(np.log(len(vocab)))


def test_held_out_nll_matches_the_count_table_for_a_bigram_model():
    """A net whose logits are the log of the bigram probabilities scores exactly the table's NLL."""
    vocab = nm.Vocabulary(NAMES)
    x, y = nm.windows(NAMES, vocab, 1)
    counts = np.ones((len(vocab), len(vocab)))
    np.add.at(counts, (x[:, 0], y), 1)
    probs = counts / counts.sum(1, keepdims=True)
    net = tn.Net([tn.Embedding(len(vocab), len(vocab), dtype=np.float64)])
    net.forward(x)
    net.layers[0].params["w"][...] = np.log(probs)
    expected = -np.log(probs[x[:, 0], y]).mean()
    assert nm.held_out_nll(net, x[:, :1], y) == pytest.approx(expected, rel=1e-12)
