"""The course's standard networks: the MLP and CNN that train MNIST from the command line, in the
widgets and in the benchmarks, and the small GPT of notebook 14 (one definition each, imported
from here)."""
from .conv import Conv2D, MaxPool2D
from .errors import ConfigError
from .layers import GELU, Dense, Dropout, Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from .net import Net
from .norm import LayerNorm
from .sequence import Embedding, MultiHeadAttention, PositionalEmbedding, Residual

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "leaky_relu": LeakyReLU,
               "gelu": GELU}


def build_mlp(hidden=(200, 100), outputs=10, activation="relu", init="he_normal", flatten=False):
    """A multilayer perceptron: for each size h in ``hidden``, Dense(h) (initialised by ``init``)
    and the ``activation`` (a name in ``ACTIVATIONS``); then Dense(outputs), a linear output
    layer with Dense's default initialisation. ``flatten=True`` puts a Flatten first, for inputs
    such as 28×28 images. Input sizes are inferred on the first batch.

    The defaults are the command line's MNIST net: 784-200-100-10 with ReLU and He
    initialisation (made for ReLU). ``hidden=()`` gives a linear model."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; expected one of "
                          f"{sorted(ACTIVATIONS)}")
    layers = [Flatten()] if flatten else []
    for units in hidden:
        layers += [Dense(units, init=init), ACTIVATIONS[activation]()]
    return Net(layers + [Dense(outputs)])


def build_cnn():
    """A convolutional net for 28×28×1 images (channels-last): a 5×5 convolution with 16 filters,
    then 3×3 ones with 32, 64 and 64 (the first two with 'same' padding and 2×2 max pooling),
    dropout and a 128-unit hidden layer; 136k parameters. ≥ 99% MNIST test accuracy in 3 epochs
    of Adam 1e-3, batch 128 (seed 0: 99.05%; 99.15% with the command line's weight averaging).

    Pooling comes before the ReLU: max pooling and ReLU commute (both are monotone), so the
    network computes exactly the same function, but the ReLU then runs on 4× fewer numbers."""
    return Net([Conv2D(16, 5, padding="same"), MaxPool2D(2), ReLU(),     # 14×14×16
                Conv2D(32, 3, padding="same"), MaxPool2D(2), ReLU(),     # 7×7×32
                Conv2D(64, 3), ReLU(),                                   # 5×5×64
                Conv2D(64, 3), ReLU(),                                   # 3×3×64
                Flatten(), Dropout(0.25),
                Dense(128, init="he_normal"), ReLU(), Dropout(0.5),
                Dense(10)])


def build_gpt(vocab_size, context, dim=64, heads=4, layers=2, dtype=None):
    """A small GPT (decoder-only transformer) over ``vocab_size`` tokens that reads up to
    ``context`` of them: token embedding + learned positions, ``layers`` transformer blocks
    (pre-LayerNorm causal self-attention with ``heads`` heads, then a 4·dim GELU MLP, each
    inside a Residual), a final LayerNorm and a Dense to the vocabulary's logits. Ids (B, T)
    in, logits (B, T, vocab_size) out. ``dtype`` (float32 unless given) is the embedding's;
    every later layer takes it from its input."""
    return Net([Embedding(vocab_size, dim, dtype=dtype), PositionalEmbedding(context),
                *(block for _ in range(layers) for block in transformer_block(dim, heads)),
                LayerNorm(), Dense(vocab_size)])


def transformer_block(dim, heads):
    """One block of a GPT: attention, then a position-wise MLP, each a residual correction
    with a LayerNorm in front (the pre-norm arrangement of GPT-2)."""
    return [Residual(Net([LayerNorm(), MultiHeadAttention(heads, causal=True)])),
            Residual(Net([LayerNorm(), Dense(4 * dim), GELU(), Dense(dim)]))]
