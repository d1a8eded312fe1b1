"""Sequences: token embeddings, positions, causal self-attention, residual blocks, sampling.

A language model reads token ids, integers (batch, time), and predicts at every position the
next token: logits (batch, time, vocabulary), trained with ``SoftmaxCrossEntropy`` against the
ids shifted by one. Between the two, every layer maps (batch, time, dim) to (batch, time, dim):

    Embedding             ids (B, T) → vectors (B, T, D): row ``ids[b, t]`` of a learned table
    PositionalEmbedding   adds a learned vector per position t, so order can matter
    MultiHeadAttention    each position mixes the vectors of the positions before it (causal)
    Residual(block)       x + block(x): the block learns a correction, gradients flow past it
    LayerNorm, Dense      act on the last axis, the same at every position (tinynn.norm, .layers)

A transformer block is ``Residual(Net([LayerNorm(), MultiHeadAttention(4)]))`` followed by
``Residual(Net([LayerNorm(), Dense(4 * D), GELU(), Dense(D)]))``; ``tinynn.models.build_gpt``
stacks them. ``sample`` generates from a trained model, one token at a time.

Token ids are the one input that is not floating point: only an Embedding takes them (it refuses
floats, which are almost always data that was cast by mistake), and ids are not differentiable,
so an Embedding's backward fills its gradient and returns no input gradient (None). Every other
layer here keeps the rules of ``tinynn.layers`` (float input, fixed dtype, backward never writes
into what forward saved).
"""
import numpy as np

from . import initializers
from .checks import check_float_dtype, check_float_input, check_int, check_number
from .errors import ConfigError, ShapeError
from .functional import matmul_rows, softmax
from .layers import Layer
from .net import Net, call_backward, describe, join_path, leaf_layers
from .random import rng


def _normal(shape, dtype):
    """N(0, 1) entries: PyTorch's nn.Embedding initialisation (a LayerNorm follows them)."""
    return initializers.normal(shape, dtype, std=1.0)


class Embedding(Layer):
    """A learned table w of shape (num_embeddings, dim): token id i becomes row w[i].

        y[b, t] = w[ids[b, t]]        ids (B, T) integers in [0, num_embeddings) → y (B, T, dim)

    This is Dense applied to one-hot rows (onehot(i) @ w = w[i]) without building them.
    Backward: each position sends its upstream gradient to the row it read, so
        dL/dw[i] = Σ over the positions (b, t) with ids[b, t] = i of G[b, t]
    (``np.add.at``, which adds once per occurrence; ``dw[ids] += G`` would keep only one of
    several positions reading the same row). The ids get no gradient: they are integers, not
    something a step can nudge, so backward returns None.

    Built at once (its shape is known): float32 unless ``dtype`` says otherwise."""

    takes_ids = True

    def __init__(self, num_embeddings, dim, dtype=None):
        super().__init__()
        self.num_embeddings = check_int(num_embeddings, "num_embeddings", "Embedding")
        self.dim = check_int(dim, "dim", "Embedding")
        self.dtype = None if dtype is None else check_float_dtype(dtype, "Embedding")
        self.params["w"] = _normal((self.num_embeddings, self.dim), self.dtype or np.float32)
        self.make_grads()

    def forward(self, ids, training=True):
        self._check(ids)
        if training:
            self.save_for_backward(ids)
        return self.params["w"][ids]

    def _check(self, ids):
        if not isinstance(ids, np.ndarray) or ids.dtype.kind not in "iu":
            got = f"dtype {ids.dtype}" if isinstance(ids, np.ndarray) else type(ids).__name__
            raise ShapeError(f"{self!r}: expected integer token ids (batch, time), got {got}; "
                             "hint: ids index the table, keep them integers (np.int64)")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ShapeError(f"{self!r}: token ids must lie in [0, {self.num_embeddings - 1}], got "
                             f"min {ids.min()} and max {ids.max()}; hint: is num_embeddings the "
                             "vocabulary size?")

    def backward(self, grad, input_grad=True):
        """Fill ``grads["w"]``; returns None (ids have no gradient)."""
        (ids,) = self.saved_tensors
        self.grads["w"][...] = 0
        np.add.at(self.grads["w"], ids, grad)     # dL/dw[i] = Σ_{ids[b,t] = i} G[b, t]
        return None

    def config(self):
        return {"num_embeddings": self.num_embeddings, "dim": self.dim}


class PositionalEmbedding(Layer):
    """Learned positions: y[b, t] = x[b, t] + w[t], with w of shape (max_len, dim).

    Attention by itself ignores order (shuffling the positions shuffles its outputs the same
    way); adding a vector that depends on t lets the model tell "a" at the start of a name from
    "a" at its end. Sequences of up to ``max_len`` positions fit; a longer one is refused (there
    is no learned vector for position max_len). ``dim`` is inferred from the input on the first
    forward (or given, to build at once).

    Backward: y = x + w[t] is a sum, so dL/dx = G, and w[t] collects the gradient of every
    sequence of the batch at position t: dL/dw[t] = Σ_b G[b, t] (rows t ≥ T get 0)."""

    def __init__(self, max_len, dim=None, dtype=None):
        super().__init__()
        self.max_len = check_int(max_len, "max_len", "PositionalEmbedding")
        self.dtype = None if dtype is None else check_float_dtype(dtype, "PositionalEmbedding")
        if dim is not None:
            self.build(check_int(dim, "dim", "PositionalEmbedding"), self.dtype or np.float32)

    def build(self, dim, dtype):
        self.params["w"] = _normal((self.max_len, dim), dtype)
        self.make_grads()

    def forward(self, x, training=True):
        check_float_input(x, self)
        if x.ndim != 3:
            raise ShapeError(f"{self!r}: expected a sequence (batch, time, dim), got shape "
                             f"{x.shape}")
        if "w" not in self.params:
            self.build(x.shape[2], self.dtype or x.dtype)
        w = self.params["w"]
        if x.shape[2] != w.shape[1] or x.dtype != w.dtype:
            raise ShapeError(f"{self!r}: expected input (batch, time, {w.shape[1]}) of dtype "
                             f"{w.dtype}, got {x.shape} of dtype {x.dtype}")
        if x.shape[1] > self.max_len:
            raise ShapeError(f"{self!r}: the sequence has {x.shape[1]} positions (shape "
                             f"{x.shape}), this table holds max_len={self.max_len}; hint: crop "
                             f"the input to its last {self.max_len} tokens")
        if training:
            self.save_for_backward(x.shape[1])
        return x + w[:x.shape[1]]

    def backward(self, grad, input_grad=True):
        (time,) = self.saved_tensors
        self.grads["w"][...] = 0
        self.grads["w"][:time] = grad.sum(axis=0)  # dL/dw[t] = Σ_b G[b, t]
        return grad if input_grad else None        # dL/dx = G

    def config(self):
        return {"max_len": self.max_len}


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product self-attention, (B, T, D) → (B, T, D).

    Every position t asks a question (query q_t), offers a label (key k_s) and a content (value
    v_s); it takes a weighted average of the values, weighted by how well its query matches
    each key. With H heads of width d = D / H, each head h does this in its own d-dimensional
    slice:
        Q = x wq + bq,  K = x wk,  V = x wv + bv               (B, T, D), split into H heads
        S = Q Kᵀ / √d                                          (B, H, T, T) scores
        S[t, s] = −∞ for s > t   (causal: a position sees only itself and the past)
        A = softmax(S) over s (the keys)                       each row sums to 1
        O = A V, heads merged back into (B, T, D);   y = O wo + bo
    The √d keeps the scores' spread independent of d, so the softmax does not saturate.

    Backward, from G = dL/dy, one step at a time in reverse:
        dL/dwo = Oᵀ G,   dL/dbo = Σ G,   dO = G woᵀ                          (Dense)
        dA = dO Vᵀ,      dV = Aᵀ dO                                          (a product)
        dS = A ⊙ (dA − Σ_s dA ⊙ A)                                           (softmax Jacobian)
        dQ = dS K / √d,  dK = dSᵀ Q / √d                                     (a product)
        dL/dwq = xᵀ dQ, dL/dbq = Σ dQ (and the same for K, V);  dL/dx = dQ wqᵀ + dK wkᵀ + dV wvᵀ
    The softmax row a = softmax(s) has Jacobian ∂aᵢ/∂sⱼ = aᵢ(δᵢⱼ − aⱼ), which gives dS above.
    The mask needs no backward of its own: a masked score has A = 0, so its dS is 0.
    Sums run over batch and time, as in Dense; x enters three times, so dL/dx adds three terms.

    Parameters (created on the first forward, D from the input): wq, wk, wv, wo (D, D) and
    bq, bv, bo (D,). There is no key bias: it would add the same q_t·bk to every score of row
    t, which the softmax cancels, so its gradient is always exactly 0 (a key bias of PyTorch's
    nn.MultiheadAttention learns nothing either). ``causal=False`` lets every position see every
    other (an encoder)."""

    PROJECTIONS = ("q", "k", "v", "o")
    BIASES = ("q", "v", "o")

    def __init__(self, num_heads, causal=True, init="xavier_uniform", dtype=None):
        super().__init__()
        self.num_heads = check_int(num_heads, "num_heads", "MultiHeadAttention")
        if not isinstance(causal, bool):
            raise ConfigError(f"MultiHeadAttention: causal must be True or False, got {causal!r}")
        self.causal = causal
        self.init = initializers.get(init)
        self.dtype = None if dtype is None else check_float_dtype(dtype, "MultiHeadAttention")

    def build(self, dim, dtype):
        if dim % self.num_heads:
            raise ShapeError(f"{self!r}: the width {dim} must divide into {self.num_heads} heads; "
                             f"hint: a width that is a multiple of {self.num_heads}")
        for p in self.PROJECTIONS:
            self.params["w" + p] = self.init((dim, dim), dtype)
            if p in self.BIASES:
                self.params["b" + p] = np.zeros(dim, dtype)
        self.make_grads()

    def _check(self, x):
        check_float_input(x, self)
        if x.ndim != 3:
            hint = (" (a causal layer orders positions: it needs the time axis)" if self.causal
                    else "")
            raise ShapeError(f"{self!r}: expected a sequence (batch, time, dim), got shape "
                             f"{x.shape}{hint}; hint: for one position per sample use x[:, None]")
        wq = self.params.get("wq")
        if wq is not None and (x.shape[2] != len(wq) or x.dtype != wq.dtype):
            raise ShapeError(f"{self!r}: expected input (batch, time, {len(wq)}) of dtype "
                             f"{wq.dtype}, got {x.shape} of dtype {x.dtype}")

    def split_heads(self, x):
        """(B, T, D) → (B, H, T, D/H): head h is the slice of width D/H it owns."""
        batch, time, dim = x.shape
        return x.reshape(batch, time, self.num_heads, dim // self.num_heads).transpose(0, 2, 1, 3)

    @staticmethod
    def merge_heads(x):
        """(B, H, T, D/H) → (B, T, D), the inverse of ``split_heads``."""
        batch, heads, time, width = x.shape
        return x.transpose(0, 2, 1, 3).reshape(batch, time, heads * width)

    def forward(self, x, training=True):
        self._check(x)
        if "wq" not in self.params:
            self.build(x.shape[2], self.dtype or x.dtype)
        p = self.params
        q, k, v = (self.split_heads(matmul_rows(x, p["w" + n]) + p.get("b" + n, 0)) for n in "qkv")
        scale = x.dtype.type(1.0 / np.sqrt(q.shape[-1]))
        scores = (q @ k.transpose(0, 1, 3, 2)) * scale             # (B, H, T, T)
        if self.causal:
            scores = np.where(causal_mask(x.shape[1]), scores, -np.inf)
        attention = softmax(scores, axis=-1)
        out = self.merge_heads(attention @ v)                       # (B, T, D)
        if training:
            self.save_for_backward(x, q, k, v, attention, out)
        return matmul_rows(out, p["wo"]) + p["bo"]

    def backward(self, grad, input_grad=True):
        x, q, k, v, attention, out = self.saved_tensors
        p, g = self.params, self.grads
        scale = x.dtype.type(1.0 / np.sqrt(q.shape[-1]))
        _dense_grads(g, "o", out, grad)                             # dL/dwo, dL/dbo
        d_out = self.split_heads(matmul_rows(grad, p["wo"].T))                  # dO, per head
        d_attention = d_out @ v.transpose(0, 1, 3, 2)               # dA = dO Vᵀ
        d_v = attention.transpose(0, 1, 3, 2) @ d_out               # dV = Aᵀ dO
        d_scores = attention * (d_attention
                                - (d_attention * attention).sum(axis=-1, keepdims=True))
        d_q = (d_scores @ k) * scale                                # dQ = dS K / √d
        d_k = (d_scores.transpose(0, 1, 3, 2) @ q) * scale          # dK = dSᵀ Q / √d
        for name, d in zip("qkv", (d_q, d_k, d_v)):
            _dense_grads(g, name, x, self.merge_heads(d))
        if not input_grad:
            return None
        return sum(matmul_rows(self.merge_heads(d), p["w" + n].T) for n, d in zip("qkv", (d_q, d_k, d_v)))

    def config(self):
        return {"num_heads": self.num_heads, "causal": self.causal}


def causal_mask(time):
    """(T, T) booleans, True where position t may look at position s (s ≤ t)."""
    return np.tril(np.ones((time, time), dtype=bool))


def _dense_grads(grads, name, x, grad):
    """Dense's parameter gradients for y = x w + b on (B, T, ·) arrays, summed over B and T:
    grads["w<name>"] = Xᵀ G and grads["b<name>"] = Σ G (if there is that bias), with X and G
    flattened to rows."""
    rows, grad_rows = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
    grads["w" + name][...] = rows.T @ grad_rows
    if "b" + name in grads:
        grads["b" + name][...] = grad_rows.sum(axis=0)


class Residual(Layer):
    """A skip connection around ``block`` (a layer or a Net): y = x + block(x).

    The block learns a correction to its input rather than a whole new representation, and the
    gradient has a path that no block can shrink:
        dL/dx = G + dL/dx through the block      (the two paths of the sum add up)
    which is what lets deep stacks of blocks train. The block's output must have x's shape.

    A Residual holds no parameters of its own: ``params``, ``grads`` and ``state`` are views of
    its block's, named by their path inside the block (``"0.gamma"``, ``"1.wq"``, ...; just
    ``"w"`` for a block that is a single layer), the live arrays themselves. In a Net the
    Residual adds no step to the path (``leaf_layers``)."""

    def __init__(self, block):
        if not isinstance(block, (Layer, Net)):
            raise ConfigError(f"Residual: block must be a tinynn Layer or Net, got {block!r}")
        self.block = block
        self._saved = None

    def sublayers(self):
        """The one layer inside (an empty step: the block has the Residual's path)."""
        return [("", self.block)]

    @property
    def params(self):
        return self._named("params")

    @property
    def grads(self):
        return self._named("grads")

    @property
    def state(self):
        return self._named("state")

    def _named(self, store):
        return {join_path(path, name): array for path, layer in leaf_layers(self.block)
                for name, array in (getattr(layer, store, None) or {}).items()}

    @property
    def saved_tensors(self):
        """What the block's layers saved (the Residual saves nothing of its own)."""
        super().saved_tensors  # CallOrderError without a training forward
        return tuple(layer.saved_tensors for _, layer in leaf_layers(self.block))

    def forward(self, x, training=True):
        check_float_input(x, self)
        y = self.block.forward(x, training)
        if y.shape != x.shape:
            raise ShapeError(f"{self!r}: the block must keep the shape of its input for x + "
                             f"block(x): input {x.shape}, block output {y.shape}")
        if training:
            self.save_for_backward()
        return x + y

    def backward(self, grad, input_grad=True):
        self.saved_tensors  # CallOrderError without a training forward
        through_block = call_backward(self.block.backward, grad, input_grad)
        return grad + through_block if input_grad else None

    def architecture(self):
        """``{"type": "Residual", "block": <the block's description>}`` (see Net.architecture)."""
        return {"type": "Residual", "block": describe(self.block)}

    def __repr__(self):
        return f"Residual({self.block!r})"


def sample(net, start, steps, temperature=1.0, top_k=None, stop=None, context=None):
    """Generate ``steps`` more tokens after the ids ``start`` ((T0,) or (B, T0)) from a trained
    language model (a Net or Model whose forward gives logits (B, T, V), or (B, V) for a model
    that reads a fixed window), one token at a time:

        logits of the last position / temperature → keep the top_k largest → softmax → draw

    ``temperature`` < 1 sharpens the distribution (safer, more repetitive), > 1 flattens it.
    ``top_k`` draws only among the k most likely tokens. ``stop``: a token id that ends a
    sequence (e.g. the end-of-name token); a finished row keeps repeating it, and sampling ends
    early once every row has finished. The model sees at most the last ``context`` ids (default:
    the max_len of its PositionalEmbedding, if it has one). Draws from tinynn's generator, so
    ``tn.seed`` makes it reproducible. Returns the ids (B, T0 + generated), integers."""
    net = getattr(net, "net", net)
    ids = np.array(start, dtype=np.int64, ndmin=2)
    temperature = check_number(temperature, "temperature", "sample", "(0, inf)")
    steps = check_int(steps, "steps", "sample", minimum=0)
    top_k = None if top_k is None else check_int(top_k, "top_k", "sample")
    context = _context_length(net) if context is None else check_int(context, "context", "sample")
    done = np.zeros(len(ids), dtype=bool)
    for _ in range(steps):
        window = ids if context is None else ids[:, -context:]
        logits = net.forward(window, training=False)
        logits = logits[:, -1] if logits.ndim == 3 else logits
        token = draw(logits.astype(np.float64) / temperature, top_k)
        if stop is not None:
            token = np.where(done, stop, token)
            done |= token == stop
        ids = np.concatenate([ids, token[:, None]], axis=1)
        if stop is not None and done.all():
            break
    return ids


def draw(logits, top_k=None):
    """One token per row of ``logits`` (B, V) from softmax(logits), only among the ``top_k``
    largest when given (the others' logits become −∞), by inverse-CDF sampling with tinynn's
    generator: the first token whose cumulative probability exceeds a uniform draw u."""
    if top_k is not None and top_k < logits.shape[1]:
        kth_largest = np.sort(logits, axis=1)[:, -top_k][:, None]
        logits = np.where(logits < kth_largest, -np.inf, logits)
    cumulative = np.cumsum(softmax(logits, axis=1), axis=1)
    u = rng().random((len(logits), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative <= u).sum(axis=1), logits.shape[1] - 1)


def _context_length(net):
    """The max_len of the net's first PositionalEmbedding, or None (no limit known)."""
    for _, layer in leaf_layers(net):
        if isinstance(layer, PositionalEmbedding):
            return layer.max_len
    return None
