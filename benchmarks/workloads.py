"""The worker side of benchmarks/bench.py: what runs inside one measuring subprocess.

``bench.py --worker JOBS`` calls ``worker(jobs)``: for one framework (tinynn or PyTorch) it
builds the model, times epochs, steps, the GEMM floor, the input checks or one class's textbook
path, and prints the results as one ``BENCH-RESULT <json>`` line for the parent to read.
Everything heavy (numpy, tinynn, torch) is imported inside the functions: the parent process
imports this module without loading any of them.
"""
import json
import math
import os
import platform
import time
from pathlib import Path

MARK = "BENCH-RESULT "  # the line of a worker's output that holds its results
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# notebook 14's GPT (issue 24): 27 characters, context 16, width 64, 4 heads, 2 blocks, batch 32
GPT = {"vocab_size": 27, "context": 16, "dim": 64, "heads": 4, "layers": 2}
GPT_BATCH = 32


def make_data(n, model, seed=0):
    """Seeded synthetic MNIST: (n, 784) float32 in [0, 1) — or (n, 28, 28, 1) for the CNN —
    and int64 labels 0–9; for the GPT, token ids (n, context) and their targets (n, context).
    Speed does not depend on what the pixels (or characters) are."""
    import numpy as np
    rng = np.random.default_rng(seed)
    if model == "gpt":
        shape = (n, GPT["context"])
        return rng.integers(0, GPT["vocab_size"], shape), rng.integers(0, GPT["vocab_size"], shape)
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return (x.reshape(n, 28, 28, 1) if model == "cnn" else x), y


def build_tinynn(model):
    """The MLP of ``python -m tinynn train`` (784-200-100-10, ReLU) or issue 7's small CNN:
    conv 3×3×16 → max-pool 2 → ReLU → conv 3×3×32 → max-pool 2 → ReLU → dense 10 ('same'
    padding; pooling before ReLU computes the same function on 4× fewer numbers)."""
    import tinynn as tn
    from tinynn.models import build_gpt, build_mlp
    if model == "gpt":
        net = build_gpt(**GPT)
    elif model == "mlp":
        net = build_mlp()
    else:
        from tinynn.conv import Conv2D, MaxPool2D
        net = tn.Net([Conv2D(16, 3, padding="same"), MaxPool2D(2), tn.ReLU(),
                      Conv2D(32, 3, padding="same"), MaxPool2D(2), tn.ReLU(),
                      tn.Flatten(), tn.Dense(10)])
    return tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3))


def gemm_shapes(net, x):
    """(M, K, N) of every layer's matrix product for a batch ``x``: Dense is (batch, in) @ (in,
    units); a convolution lowered to a GEMM (im2col) is (batch·out_h·out_w, kh·kw·c_in) @ (…, c_out)."""
    shapes = []
    for layer in net.layers:
        y = layer.forward(x, training=False)
        w = layer.params.get("w")
        if w is not None:
            k, n = int(math.prod(w.shape[:-1])), w.shape[-1]
            shapes.append((y.size // n, k, n))
        x = y
    return shapes


def epoch_flops(shapes, n, batch):
    """FLOPs of the GEMMs of one epoch: forward, weight gradient, and input gradient for every
    layer but the first (nobody needs dL/d(data); PyTorch skips it too)."""
    per_sample = sum((2 if i == 0 else 3) * 2 * m * k * nn / batch
                     for i, (m, k, nn) in enumerate(shapes))
    return per_sample * n


def gemm_floor(shapes, n, batch):
    """Seconds plain numpy needs for one epoch of exactly those GEMMs (operands preallocated).
    A convolution's products are timed both as one tall GEMM and as a stack of per-sample
    products (numpy's batched matmul), and the faster form counts: the floor is the best plain
    numpy does on these shapes."""
    per_step = 0.0
    for i, (m, k, nn) in enumerate(shapes):
        stacks = [1] + ([batch] if m > batch else [])
        per_step += min(time_products(m, k, nn, stack, input_grad=i > 0) for stack in stacks)
    return per_step * n / batch  # the last, smaller batch is counted pro rata


def time_products(m, k, n, stack, input_grad):
    """Best-of-3 seconds for one step's products of an (m, k) @ (k, n) layer, computed as
    ``stack`` independent products: forward, weight gradient (summed over the stack) and,
    if ``input_grad``, the input gradient."""
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.random((stack, m // stack, k), dtype=np.float32)
    g = rng.random((stack, m // stack, n), dtype=np.float32)
    w = rng.random((k, n), dtype=np.float32)
    y, da = np.empty_like(g), np.empty_like(a)
    dw, dw_stack = np.empty((k, n), np.float32), np.empty((stack, k, n), np.float32)

    def products():
        np.matmul(a, w, out=y)
        if stack == 1:
            np.matmul(a[0].T, g[0], out=dw)
        else:
            np.sum(np.matmul(a.transpose(0, 2, 1), g, out=dw_stack), axis=0, out=dw)
        if input_grad:
            np.matmul(g, w.T, out=da)

    products()
    reps = max(1, int(0.02 / max(_seconds(products), 1e-6)))  # ~20 ms per timing
    return min(_seconds(products, reps) for _ in range(3))


def _seconds(f, reps=1):
    start = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - start) / reps


def peak_gemm(size, reps=10):
    """float32 GFLOP/s of a large square GEMM: this machine's practical BLAS peak."""
    import numpy as np
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    start = time.perf_counter()
    for _ in range(reps):
        np.matmul(a, a, out=out)
    return 2 * size ** 3 * reps / (time.perf_counter() - start) / 1e9


def tinynn_epoch(model, x, y, batch, seed, epochs=1):
    """Seconds of the fastest of ``epochs`` epochs of ``Model.fit``, each timed from its first
    batch to its last (fit's one-off input checks excluded), plus the whole fit call's time."""
    import tinynn as tn

    class Timer(tn.Callback):
        def on_epoch_begin(self, model, epoch):
            self.start = time.perf_counter()

        def on_epoch_end(self, model, epoch, logs):
            self.seconds.append(time.perf_counter() - self.start)

    timer = Timer()
    timer.seconds = []
    start = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=batch, seed=seed, callbacks=[timer])
    return min(timer.seconds), time.perf_counter() - start


def input_checks(model, x, y, batch):
    """Seconds fit spends checking its arguments (once per call), and seconds train_step
    spends checking one batch (its per-step share), each the fastest of a few tries."""
    fit_check = min(_seconds(lambda: model._check_fit_args(x, y, 1, batch, None))
                    for _ in range(3))
    xb, yb = x[:batch], y[:batch]
    step_check = min(_seconds(lambda: model._as_target(yb, len(model._as_input(xb, "x"))), 200)
                     for _ in range(5))
    step = min(_seconds(lambda: model.train_step(xb, yb), 20) for _ in range(3))
    return {"fit_check_seconds": fit_check, "step_check_seconds": step_check,
            "train_step_seconds": step}


def fast_path_classes():
    """'module.Class' for every tinynn class that defines a class attribute ``fast`` (its speed
    tricks sit in a fast path beside the textbook code), in file order. Only modules whose source
    mentions such an attribute are imported, so the course modules (matplotlib, widgets) are not."""
    import importlib
    import inspect
    import re
    import tinynn
    package = Path(tinynn.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if not re.search(r"^\s+fast\s*=", path.read_text(encoding="utf-8"), re.M):
            continue
        parts = ("tinynn",) + path.relative_to(package).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        module = importlib.import_module(name)
        found += [f"{name}.{attr}" for attr, cls in vars(module).items()
                  if inspect.isclass(cls) and cls.__module__ == name and "fast" in vars(cls)]
    return found


def resolve(qualified):
    """The class named 'module.Class'."""
    import importlib
    module, _, name = qualified.rpartition(".")
    return getattr(importlib.import_module(module), name)


def model_objects(model):
    """What a training step runs: the layers (inside nested nets too), the loss, the optimizer."""
    from tinynn.net import leaf_layers
    return [*(layer for _, layer in leaf_layers(model.net)), model.loss, model.optimizer]


def run_fast_classes(job):
    """The fast-path classes, and for each model which of them it uses."""
    classes = fast_path_classes()
    used = {}
    for model_name in job["models"]:
        objects = model_objects(build_tinynn(model_name))
        used[model_name] = [c for c in classes if any(isinstance(o, resolve(c)) for o in objects)]
    return {"classes": classes, "used": used}


class TextbookPath:
    """``with TextbookPath("tinynn.conv.Conv2D"):`` runs that class's textbook code (fast =
    False on the class, so every instance), restored afterwards. None: everything stays fast."""

    def __init__(self, qualified):
        self.cls = resolve(qualified) if qualified else None

    def __enter__(self):
        if self.cls is not None:
            self.fast, self.cls.fast = self.cls.fast, False

    def __exit__(self, *exc):
        if self.cls is not None:
            self.cls.fast = self.fast


def run_tinynn(job):
    if job["kind"] == "fast_classes":
        return run_fast_classes(job)
    with TextbookPath(job.get("textbook")):
        return run_tinynn_model(job)


def run_tinynn_model(job):
    model_name, n, batch = job["model"], job["n"], job["batch"]
    x, y = make_data(n, model_name)
    model = build_tinynn(model_name)
    model.fit(x[:2 * batch], y[:2 * batch], epochs=1, batch_size=batch)  # build, allocate, warm up
    result = {}
    if job["kind"] == "textbook":
        result["seconds"], _ = tinynn_epoch(model, x, y, batch, job["seed"], job["epochs"])
    elif job["kind"] == "epoch":
        result["seconds"], result["fit_seconds"] = tinynn_epoch(model, x, y, batch, job["seed"],
                                                                job["epochs"])
        result["steps"] = math.ceil(n / batch)
        if model_name != "gpt":  # issue 8's table: the MNIST models
            result.update(input_checks(model, x, y, batch))
    elif job["kind"] == "steps":
        seconds, _ = tinynn_epoch(model, x, y, batch, job["seed"], job["epochs"])
        result.update(seconds=seconds, steps=math.ceil(n / batch))
    elif job["kind"] == "gemm":
        shapes = gemm_shapes(model.net, x[:batch])
        result.update(shapes=shapes, gflop=epoch_flops(shapes, n, batch) / 1e9,
                      seconds=gemm_floor(shapes, n, batch),
                      peak_size=256 if n < 10000 else 1024)
        result["peak_gflops"] = peak_gemm(result["peak_size"])
    result["dtype"] = str(model.net.params[0].dtype)
    return result


def build_torch(tinynn_net):
    """The same architecture in PyTorch, translated layer by layer from the tinynn net."""
    import torch.nn as nn
    layers = []
    for desc in tinynn_net.architecture():
        kind, params = desc["type"], desc["params"]
        if kind == "Dense":
            layers.append(nn.Linear(*params["w"], bias=desc["bias"]))
        elif kind in ("ReLU", "Flatten"):
            layers.append(nn.ReLU() if kind == "ReLU" else nn.Flatten())
        elif kind == "Dropout":
            layers.append(nn.Dropout(desc["p"]))
        elif kind == "Conv2D":
            *kernel, c_in, c_out = params["w"]
            padding = desc["padding"]
            padding = 0 if padding == "valid" else _pair(padding)  # "same" passes through
            layers.append(nn.Conv2d(c_in, c_out, tuple(kernel), stride=_pair(desc["stride"]),
                                    padding=padding, dilation=_pair(desc["dilation"]),
                                    bias=desc["bias"]))
        elif kind in ("MaxPool2D", "AvgPool2D"):
            pool = nn.MaxPool2d if kind == "MaxPool2D" else nn.AvgPool2d
            layers.append(pool(_pair(desc["pool_size"]), stride=_pair(desc["stride"])))
        else:
            raise ValueError(f"no PyTorch translation for tinynn layer {kind}")
    return nn.Sequential(*layers)


def _pair(value):
    """A tinynn config size (3, [3, 5] or "same") as PyTorch takes it."""
    return tuple(value) if isinstance(value, list) else value


def build_torch_gpt(vocab_size, context, dim, heads, layers):
    """Notebook 14's GPT written the usual PyTorch way (nanoGPT's): token embedding + learned
    positions, pre-LayerNorm blocks of causal self-attention (one fused q/k/v Linear,
    F.scaled_dot_product_attention) and a 4·dim GELU (tanh) MLP, a final LayerNorm and a Linear
    to the logits (batch, time, vocab_size)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.fc, self.out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = (z.view(b, t, heads, d // heads).transpose(1, 2)
                       for z in self.qkv(self.ln1(x)).split(d, dim=2))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
            return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(vocab_size, dim)
            self.positions = nn.Parameter(torch.randn(context, dim))
            self.blocks = nn.Sequential(*(Block() for _ in range(layers)))
            self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab_size)

        def forward(self, ids):
            h = self.tokens(ids) + self.positions[:ids.shape[1]]
            return self.head(self.ln(self.blocks(h)))

    return GPT()


def sequence_cross_entropy(logits, target):
    """Cross-entropy over (batch, time, classes) logits, the mean over every position."""
    import torch.nn.functional as F
    return F.cross_entropy(logits.flatten(0, -2), target.flatten())


def torch_epoch(net, opt, loss_fn, x, y, batch, seed):
    """One epoch of the usual PyTorch loop, with the same loss/accuracy bookkeeping as fit."""
    import torch
    torch.manual_seed(seed)
    order = torch.randperm(len(x))
    total, correct = 0.0, 0
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        idx = order[i:i + batch]
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        out = net(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
        correct += (out.argmax(-1) == yb).sum().item()
    return time.perf_counter() - start


def run_torch(job):
    import torch
    torch.set_num_threads(job["threads"])
    model_name, n, batch = job["model"], job["n"], job["batch"]
    x_np, y_np = make_data(n, model_name)
    torch.manual_seed(0)
    if model_name == "gpt":
        net, loss_fn = build_torch_gpt(**GPT), sequence_cross_entropy
    else:
        tinynn_model = build_tinynn(model_name)
        tinynn_model.predict(x_np[:1])  # builds the lazy layers, so the architecture has shapes
        net, loss_fn = build_torch(tinynn_model.net), torch.nn.CrossEntropyLoss()
    if model_name == "cnn":
        x_np = x_np.transpose(0, 3, 1, 2)  # PyTorch convolutions are channels-first
    x, y = torch.from_numpy(x_np.copy()), torch.from_numpy(y_np)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    torch_epoch(net, opt, loss_fn, x[:2 * batch], y[:2 * batch], batch, 0)  # warm up
    seconds = min(torch_epoch(net, opt, loss_fn, x, y, batch, job["seed"] + e)
                  for e in range(job.get("epochs", 1)))
    return {"seconds": seconds, "steps": math.ceil(n / batch), "threads": torch.get_num_threads()}


def environment_facts(framework, threads):
    """Library versions and the BLAS each framework runs (after a GEMM has loaded it)."""
    import numpy as np
    facts = {"numpy": np.__version__, "python": platform.python_version()}
    a = np.ones((64, 64), np.float32)
    a @ a
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        torch.ones(64, 64) @ torch.ones(64, 64)
        facts.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                     torch_blas="MKL" if torch.backends.mkl.is_available() else "other",
                     torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
    else:
        import tinynn
        facts["tinynn"] = tinynn.__version__
    try:
        from threadpoolctl import threadpool_info
        facts["blas"] = [{k: info.get(k) for k in ("internal_api", "version", "architecture",
                                                    "num_threads", "threading_layer")}
                         for info in threadpool_info()]
    except ImportError:
        facts["blas"] = "threadpoolctl not installed"
    facts["openblas_env"] = {v: os.environ.get(v) for v in OPENBLAS_VARS}
    return facts


def worker(jobs):
    results = []
    for job in jobs:
        try:
            run = run_torch if job["framework"] == "torch" else run_tinynn
            with blas_threads(job["threads"]):
                results.append(environment_facts(job["framework"], job["threads"])
                               if job["kind"] == "facts" else run(job))
        except Exception as e:  # one unavailable model (e.g. no CNN yet) must not sink the rest
            results.append({"error": f"{type(e).__name__}: {e}"})
    print(MARK + json.dumps(results), flush=True)


def blas_threads(threads):
    """numpy's BLAS limited to ``threads`` threads, as PyTorch is (threadpoolctl)."""
    import numpy  # noqa: F401  (loads OpenBLAS: threadpoolctl limits only loaded libraries)
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=threads, user_api="blas")
