#!/usr/bin/env python
"""tinynn against PyTorch CPU on MNIST-shaped data: seconds per epoch, GEMM floor, per-step
overhead and import time. Writes a markdown table to benchmarks/RESULTS.md.

    python benchmarks/bench.py                          # full run, a few minutes per model
    python benchmarks/bench.py --models mlp --repeats 5
    python benchmarks/bench.py --quick --out /tmp/r.md  # tiny sizes: checks the script, not speed

How it measures, and why:
- Every measurement runs in a fresh subprocess, one framework per process (two BLAS thread pools
  in one process fight for the cores), and the frameworks alternate: tinynn, torch, tinynn, ...
  so slow drifts in machine load hit both alike. Medians over the repeats, and the median of the
  per-pair ratios (a pair = one tinynn run and the torch run right after it).
- An epoch is one shuffled pass over 60,000 synthetic samples (seeded), timed from the first batch
  to the last, with the per-batch loss and accuracy bookkeeping both frameworks' loops do. Each
  run times a few epochs (MLP 3, CNN 2) and keeps the fastest: other jobs only ever add time.
  Both frameworks get the same number of threads (--threads, default 2): PyTorch through
  torch.set_num_threads, numpy's BLAS through threadpoolctl (else OpenBLAS starts a thread per
  core of the host, even when the process may use only two of them); the table records both.
  PyTorch runs a plain tensor-indexing loop (no DataLoader).
- The GEMM floor is the time plain numpy takes for just the matrix products an epoch needs
  (forward, weight gradient, and the input gradient of every layer but the first), with
  preallocated operands. "Within 3x of the floor" compares an epoch with it.
- Per-step overhead: time per step at batch 32 and 512; fitting t(b) = overhead + b·per_sample
  through the two points gives the fixed cost of one step, whatever the batch.
- Input checks (issue 8): fit validates its arguments once per call (shapes, dtypes, NaN/inf,
  labels) and then runs its steps unchecked; train_step checks every batch it is given. Both
  are timed on their own and shown as a share of an epoch / a step.
- Fast paths (issue 13): every tinynn class with a class attribute ``fast`` keeps its speed
  tricks apart from its textbook code. For each such class an epoch runs with that class alone
  on its textbook path (``fast = False``), interleaved with the all-fast epochs above; the table
  shows what the fast path saves as a share of the epoch. Classes are found by scanning
  tinynn's modules, so a new fast path shows up without touching this script.
- If OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set (some machines set them to dodge bugs of old
  OpenBLAS builds) numpy may run a slower kernel: tinynn is then also measured with both unset,
  in its subprocess only, and threadpoolctl records which kernel each variant ran.
PyTorch is optional (never a dependency of tinynn); without it only tinynn's numbers are printed.
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "BENCH-RESULT "
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
HEAVY_MODULES = ("matplotlib", "ipywidgets", "tqdm", "torch")
DISTURBED = 0.1  # other processes' CPU use, in cores, above which a measurement is disturbed


# =========================================================================== worker side
# Everything below up to "parent side" runs inside one subprocess for one framework.

def make_data(n, model, seed=0):
    """Seeded synthetic MNIST: (n, 784) float32 in [0, 1) — or (n, 28, 28, 1) for the CNN —
    and int64 labels 0–9. Speed does not depend on what the pixels show."""
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return (x.reshape(n, 28, 28, 1) if model == "cnn" else x), y


def build_tinynn(model):
    """The MLP of ``python -m tinynn train`` (784-200-100-10, ReLU) or issue 7's small CNN:
    conv 3×3×16 → max-pool 2 → ReLU → conv 3×3×32 → max-pool 2 → ReLU → dense 10 ('same'
    padding; pooling before ReLU computes the same function on 4× fewer numbers)."""
    import tinynn as tn
    from tinynn.models import build_mlp
    if model == "mlp":
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
    """What a training step runs: the layers, the loss and the optimizer."""
    return [*model.net.layers, model.loss, model.optimizer]


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
        correct += (out.argmax(1) == yb).sum().item()
    return time.perf_counter() - start


def run_torch(job):
    import torch
    torch.set_num_threads(job["threads"])
    model_name, n, batch = job["model"], job["n"], job["batch"]
    x_np, y_np = make_data(n, model_name)
    tinynn_model = build_tinynn(model_name)
    tinynn_model.predict(x_np[:1])  # builds the lazy layers, so the architecture has shapes
    torch.manual_seed(0)
    net = build_torch(tinynn_model.net)
    if model_name == "cnn":
        x_np = x_np.transpose(0, 3, 1, 2)  # PyTorch convolutions are channels-first
    x, y = torch.from_numpy(x_np.copy()), torch.from_numpy(y_np)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
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


# =========================================================================== parent side

def others_running():
    """How many other tasks want a CPU right now: /proc/loadavg's 4th field counts the
    runnable tasks, this one included (0 where there is no /proc)."""
    try:
        return int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1
    except (OSError, ValueError, IndexError):
        return 0


def wait_until_quiet(limit):
    """Wait up to ``limit`` seconds until no other task wants a CPU for 3 looks in a row."""
    deadline, calm = time.monotonic() + limit, 0
    while calm < 3 and time.monotonic() < deadline:
        calm = calm + 1 if others_running() == 0 else 0
        time.sleep(0.5)


def busy_cpu_seconds():
    """CPU time all processes have used since boot (/proc/stat; 0 where there is none),
    counting time the hypervisor stole too."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def spawn(jobs, env):
    """Run ``jobs`` in a fresh Python process; returns one result dict per job, and how many
    cores' worth of CPU *other* processes used meanwhile (0 on an otherwise idle machine)."""
    busy, ours, start = busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(jobs)], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    ours = children_cpu_seconds() - ours
    others = max(0.0, (busy_cpu_seconds() - busy - ours) / (time.perf_counter() - start))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARK):
            return json.loads(line[len(MARK):]), others
    error = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return [{"error": f"worker exited with {proc.returncode}: {error}"} for _ in jobs], others


def run_undisturbed(jobs, env, args, data):
    """spawn(jobs), once more (up to --retries times) while other processes used more than a
    tenth of a core during the run: their time would count as ours."""
    for attempt in range(args.retries + 1):
        wait_until_quiet(args.wait_quiet)
        outs, others = spawn(jobs, env)
        if others <= DISTURBED:
            break
        say(f"  (disturbed: other processes used {others:.2f} cores meanwhile)")
    data["runs"] += 1
    data["disturbed"] += others > DISTURBED
    return outs


def child_env(unset_openblas=False):
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # measure this working tree's tinynn
    if unset_openblas:
        for var in OPENBLAS_VARS:  # both together: the L2 size belongs to the forced core type
            env.pop(var, None)
    return env


def import_time(env, repeats):
    """Median seconds of ``import tinynn`` (and of ``import numpy`` alone) in fresh processes,
    with bytecode cached as it is after a first import, and which heavy modules came along."""
    pycache = Path(os.environ.get("TMPDIR", "/tmp")) / "tinynn-bench-pycache"
    env = dict(env, PYTHONPYCACHEPREFIX=str(pycache))  # bytecode outside the repository
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = ("import sys, time, json; t = time.perf_counter(); import {mod}; "
            "t = time.perf_counter() - t; "
            "print(json.dumps([t, [m for m in {heavy!r} if m in sys.modules]]))")
    result = {}
    for mod in ("numpy", "tinynn"):
        cmd = [sys.executable, "-c", code.format(mod=mod, heavy=HEAVY_MODULES)]
        runs = [json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT,
                                          check=True).stdout) for _ in range(repeats + 1)][1:]
        result[mod] = {"seconds": statistics.median(r[0] for r in runs), "heavy": runs[0][1]}
    return result


def torch_available():
    import importlib.util
    return importlib.util.find_spec("torch") is not None


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def job_groups(args, framework, repeat, fast_paths):
    """The measurements of one repeat, in groups; each group runs in one fresh process.
    Full runs give every epoch its own process; --quick batches everything into one.
    ``fast_paths``: per model, the fast-path classes it uses (each gets a textbook epoch)."""
    def job(kind, model="mlp", n=args.samples, batch=128, **extra):
        return {"framework": framework, "kind": kind, "model": model, "n": n, "batch": batch,
                "seed": repeat, "epochs": args.epochs[model], "threads": args.threads, **extra}
    groups = [[job("facts")]] if repeat == 0 else []
    for model in args.models:
        groups.append([job("epoch", model)])
        groups.append([job("gemm", model)] if framework == "tinynn" else [])  # numpy only
        for cls in fast_paths.get(model, []):  # tinynn only, right after the all-fast epoch
            groups.append([job("textbook", model, textbook=cls)] if framework == "tinynn" else [])
    groups.append([job("steps", n=args.step_samples, batch=b) for b in (32, 512)])
    return [sum(groups, [])] if args.quick else groups


def record(data, name, job, out):
    kind = job["kind"]
    if kind == "facts":
        data["facts"][name] = out
    elif kind == "steps":
        data["steps"].setdefault(name, {}).setdefault(job["batch"], []).append(out)
    elif kind == "textbook":
        data["textbook"].setdefault(job["model"], {}).setdefault(name, {}) \
            .setdefault(job["textbook"], []).append(out)
    else:
        data[{"epoch": "epochs", "gemm": "gemm"}[kind]].setdefault(job["model"], {}) \
            .setdefault(name, []).append(out)
    what = f"{job['model']} {kind}" + (f" batch {job['batch']}" if kind == "steps" else "")
    if "error" in out:
        say(f"{what}, {name}: {out['error']}")
    elif kind == "gemm":
        say(f"{what}, {name}: floor {out['seconds']:.3f} s for {out['gflop']:.1f} GFLOP; "
            f"large-GEMM peak {out['peak_gflops']:.0f} GFLOP/s")
    elif kind != "facts":
        textbook = f" ({job['textbook']} textbook)" if kind == "textbook" else ""
        say(f"{what}{textbook}, {name}: {out['seconds']:.3f} s")


def measure(args):
    openblas_set = {v: os.environ[v] for v in OPENBLAS_VARS if v in os.environ}
    # tinynn variants: as the environment is, plus (if set) with the OpenBLAS overrides unset
    variants = {"tinynn": child_env()}
    if openblas_set:
        variants["tinynn (OpenBLAS vars unset)"] = child_env(unset_openblas=True)
    runners = dict(variants)
    if args.torch:
        runners["PyTorch"] = child_env()
    data = {"runners": list(runners), "openblas_set": openblas_set, "load_before": os.getloadavg(),
            "epochs": {}, "steps": {}, "gemm": {}, "facts": {}, "textbook": {}, "runs": 0,
            "disturbed": 0}
    data["fast_paths"] = find_fast_paths(args, variants["tinynn"])
    for r in range(args.repeats):
        say(f"repeat {r + 1}/{args.repeats}")
        plans = {name: job_groups(args, "torch" if name == "PyTorch" else "tinynn", r,
                                  data["fast_paths"]["used"]) for name in runners}
        for g in range(len(plans["tinynn"])):
            for name, env in runners.items():  # A/B interleaved: tinynn, torch, tinynn, torch, ...
                jobs = plans[name][g]
                if jobs:
                    for job, out in zip(jobs, run_undisturbed(jobs, env, args, data)):
                        record(data, name, job, out)
    wait_until_quiet(args.wait_quiet)
    data["imports"] = {name: import_time(env, args.import_repeats) for name, env in variants.items()}
    say(f"import tinynn: {data['imports']['tinynn']['tinynn']['seconds']:.3f} s")
    return data


def find_fast_paths(args, env):
    """{'classes': [...], 'used': {model: [...]}} from a worker (the working tree's tinynn)."""
    (out,), _ = spawn([{"framework": "tinynn", "kind": "fast_classes", "models": args.models,
                       "threads": args.threads}], env)
    if "error" in out:
        say(f"fast paths: {out['error']}")
        return {"classes": [], "used": {}, "error": out["error"]}
    say("fast paths: " + (", ".join(out["classes"]) or "none"))
    return out


def say(text):
    print(text, file=sys.stderr, flush=True)


# =========================================================================== report

def med(runs, key="seconds"):
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def fmt(value, spec=".3f", missing="–"):
    return missing if value is None else format(value, spec)


def pair_ratios(a_runs, b_runs):
    return [a["seconds"] / b["seconds"] for a, b in zip(a_runs, b_runs)
            if "seconds" in a and "seconds" in b]


def report(data, args, command):
    runners = data["runners"]
    tinynn_names = [n for n in runners if n != "PyTorch"]
    has_torch = "PyTorch" in runners
    facts = data["facts"]
    t0 = facts.get("tinynn", {})
    lines = [
        "# tinynn benchmark results", "",
        f"Command: `{command}`  ",
        f"Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"{'QUICK (tiny sizes: numbers mean nothing)' if args.quick else 'full run'}; "
        f"{args.repeats} repeat(s), {args.samples} samples per epoch; both frameworks limited "
        f"to {args.threads} threads (PyTorch: torch.set_num_threads; numpy's BLAS: threadpoolctl).",
        "",
        *busy_warning(data),
        "## Machine and libraries", "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores "
        f"({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable); "
        f"{platform.system()} {platform.release()}",
        f"- Load average (1/5/15 min) at the start: "
        f"{' / '.join(f'{v:.1f}' for v in data['load_before'])}; {data['disturbed']} of "
        f"{data['runs']} measurements disturbed (other processes used > {DISTURBED} core while "
        f"they ran{f', after up to {args.retries} retries' if args.retries else ''})",
        f"- Python {t0.get('python', '?')}, numpy {t0.get('numpy', '?')}, tinynn {t0.get('tinynn', '?')}, "
        + (f"PyTorch {facts['PyTorch'].get('torch', '?')} ({facts['PyTorch'].get('torch_blas')}, "
           f"{facts['PyTorch'].get('torch_cpu_capability')}, "
           f"{facts['PyTorch'].get('torch_threads')} threads)" if has_torch
           else "PyTorch not measured (--no-torch, or not installed: `pip install torch` to compare; "
                "it is never a tinynn dependency)"),
        "- OpenBLAS overrides in the environment: "
        + (", ".join(f"{k}={v}" for k, v in data["openblas_set"].items()) if data["openblas_set"]
           else "none (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset)"),
    ]
    for name in runners:
        blas = facts.get(name, {}).get("blas")
        if isinstance(blas, list):
            blas = "; ".join(f"{b['internal_api']} {b['version']} kernel {b['architecture']}, "
                             f"{b['num_threads']} threads ({b['threading_layer']})" for b in blas)
        lines.append(f"- BLAS seen by threadpoolctl in the {name} process: {blas or 'none loaded'}")

    lines += ["", f"## Seconds per epoch ({args.samples} samples, batch 128, Adam 1e-3, softmax-CE)",
              "", f"Each run: the fastest of {args.epochs['mlp']} (MLP) / {args.epochs['cnn']} (CNN) "
              "epochs in a fresh process; the table shows the median over runs.", ""]
    header = "| model | " + " | ".join(f"{n} s/epoch" for n in runners)
    sep = "|---|" + "---|" * len(runners)
    if has_torch:
        header += " | " + " | ".join(f"{n} / PyTorch (median of pairs) | pairs" for n in tinynn_names)
        sep += "---|---|" * len(tinynn_names)
    lines += [header + " |", sep]
    for model, per_runner in data["epochs"].items():
        row = [model] + [fmt(med(per_runner.get(n, []))) + _error(per_runner.get(n, []))
                         for n in runners]
        if has_torch:
            for n in tinynn_names:
                ratios = pair_ratios(per_runner.get(n, []), per_runner.get("PyTorch", []))
                row += [f"**{fmt(statistics.median(ratios) if ratios else None, '.2f')}**",
                        ", ".join(f"{r:.2f}" for r in ratios) or "–"]
        lines.append("| " + " | ".join(row) + " |")

    lines += ["", "## GEMM floor (plain numpy, the same matrix products, operands preallocated)", "",
              "| model | variant | GFLOP/epoch | GEMM floor s | floor GFLOP/s | "
              "tinynn GFLOP/s | tinynn / floor |"
              + (" PyTorch GFLOP/s | PyTorch / floor |" if has_torch else ""),
              "|---|---|---|---|---|---|---|" + ("---|---|" if has_torch else "")]
    peaks, peak_size = [], None
    for model, per_variant in data["gemm"].items():
        for n, runs in per_variant.items():
            floor, gflop = med(runs), med(runs, "gflop")
            peaks += [r["peak_gflops"] for r in runs if "peak_gflops" in r]
            peak_size = next((r["peak_size"] for r in runs if "peak_size" in r), peak_size)
            epoch = med(data["epochs"].get(model, {}).get(n, []))
            torch_epoch_s = med(data["epochs"].get(model, {}).get("PyTorch", []))
            row = [model, n, fmt(gflop, ".1f"), fmt(floor) + _error(runs),
                   fmt(gflop / floor if floor else None, ".0f"),
                   fmt(gflop / epoch if epoch else None, ".0f"),
                   f"**{fmt(epoch / floor if epoch and floor else None, '.2f')}×**"]
            if has_torch:
                row += [fmt(gflop / torch_epoch_s if torch_epoch_s else None, ".0f"),
                        fmt(torch_epoch_s / floor if torch_epoch_s and floor else None, ".2f") + "×"]
            lines.append("| " + " | ".join(row) + " |")
    if peaks:
        lines += ["", f"Large square float32 GEMM ({peak_size}³) in numpy: {statistics.median(peaks):.0f} "
                      "GFLOP/s (median): the practical BLAS peak of this machine."]
    shapes = [r["shapes"] for runs in data["gemm"].get("mlp", {}).values() for r in runs
              if "shapes" in r][:1] + \
             [r["shapes"] for runs in data["gemm"].get("cnn", {}).values() for r in runs
              if "shapes" in r][:1]
    if shapes:
        lines.append("GEMM shapes per step (M, K, N): " + "; ".join(
            str([tuple(s) for s in sh]) for sh in shapes) + ". FLOPs count forward, weight "
            "gradient, and the input gradient of every layer but the first.")

    lines += ["", f"## Per-step overhead (MLP, {args.step_samples} samples per run)", "",
              "| framework | batch 32: µs/step | µs/sample | batch 512: µs/step | µs/sample "
              "| fixed cost per step (µs) |", "|---|---|---|---|---|---|"]
    for name, per_batch in data["steps"].items():
        per_step = {}
        for b in (32, 512):
            runs = [r for r in per_batch.get(b, []) if "seconds" in r]
            per_step[b] = statistics.median(r["seconds"] / r["steps"] for r in runs) if runs else None
        overhead = None
        if per_step[32] and per_step[512]:
            per_sample = (per_step[512] - per_step[32]) / (512 - 32)
            overhead = per_step[32] - 32 * per_sample
        lines.append("| " + " | ".join([name] + [
            x for b in (32, 512) for x in (fmt(per_step[b] and per_step[b] * 1e6, ".0f"),
                                           fmt(per_step[b] and per_step[b] * 1e6 / b, ".2f"))]
            + [fmt(overhead and overhead * 1e6, ".0f")]) + " |")
    lines += ["", "Fixed cost per step: t(b) = overhead + b · per-sample, solved through batch 32 and "
                  "512 (what a step costs apart from the arithmetic)."]

    lines += input_check_lines(data)
    lines += fast_path_lines(data, tinynn_names)
    lines += ["", f"## Import time (fresh process, bytecode cached, median of {args.import_repeats})",
              "", "| variant | `import numpy` s | `import tinynn` s (numpy included) | heavy modules "
              "pulled in by `import tinynn` |", "|---|---|---|---|"]
    for name, imp in data["imports"].items():
        heavy = imp["tinynn"]["heavy"]
        lines.append(f"| {name} | {imp['numpy']['seconds']:.3f} | {imp['tinynn']['seconds']:.3f} | "
                     f"{', '.join(heavy) if heavy else 'none (no matplotlib, ipywidgets, tqdm, torch)'} |")

    lines += ["", "## Targets (issue 7)", ""] + targets(data, has_torch)
    return "\n".join(lines) + "\n"


def input_check_lines(data):
    """The cost of tinynn's input validation (issue 8), per model."""
    rows = []
    for model, runs in data["epochs"].items():
        ours = [r for r in runs.get("tinynn", []) if "fit_check_seconds" in r]
        if not ours:
            continue
        fit_check, epoch = med(ours, "fit_check_seconds"), med(ours)
        step_check, step = med(ours, "step_check_seconds"), med(ours, "train_step_seconds")
        rows.append(f"| {model} | {fit_check * 1e3:.1f} ms | {100 * fit_check / epoch:.2f}% | "
                    f"{step_check * 1e6:.0f} µs | {100 * step_check / step:.2f}% |")
    if not rows:
        return []
    return ["", "## Input checks (issue 8)", "",
            "| model | fit's checks, once per call | share of one epoch | train_step's checks, "
            "per batch of 128 | share of one step |", "|---|---|---|---|---|", *rows, "",
            "fit checks shapes, dtypes, NaN/inf and labels of the whole dataset once, then runs "
            "its steps unchecked: the epoch times above include no validation at all."]


def fast_path_lines(data, tinynn_names):
    """What each class's fast path saves: its textbook epoch against the all-fast epoch."""
    found = data.get("fast_paths", {})
    lines = ["", "## Fast paths (issue 13: each class's textbook code vs its fast path)", "",
             "| class | model | all fast s/epoch | this class textbook s/epoch | fast path saves "
             "(share of the textbook epoch) | pairs (textbook / fast) |",
             "|---|---|---|---|---|---|"]
    for cls in found.get("classes", []):
        for model in data["epochs"]:
            name = tinynn_names[0]
            if cls not in found["used"].get(model, []):
                lines.append(f"| {cls} | {model} | – | – | not in this model | – |")
                continue
            fast_runs = data["epochs"][model].get(name, [])
            slow_runs = data["textbook"].get(model, {}).get(name, {}).get(cls, [])
            ratios = pair_ratios(slow_runs, fast_runs)
            ratio = statistics.median(ratios) if ratios else None
            saved = f"**{100 * (1 - 1 / ratio):.0f}%**" if ratio else "–" + _error(slow_runs)
            lines.append(f"| {cls} | {model} | {fmt(med(fast_runs))} | {fmt(med(slow_runs))} | "
                         f"{saved} | {', '.join(f'{r:.2f}' for r in ratios) or '–'} |")
    note = ("Each class alone runs its textbook code (`fast = False`), everything else stays "
            "fast; saved share = 1 − fast / textbook, median over the pairs (each textbook epoch "
            "runs right after an all-fast one).")
    if "error" in found:
        note += f" Fast-path classes could not be listed: {found['error']}."
    elif not found.get("classes"):
        note += " No tinynn class defines a `fast` attribute."
    return lines + ["", note]


def busy_warning(data):
    """A loud note when other jobs shared the cores: the numbers are then not this code's."""
    if not data["disturbed"]:
        return []
    return [f"> **Busy machine**: {data['disturbed']} of {data['runs']} measurements ran while "
            "other processes used the cores, so some numbers are inflated (look for outliers "
            "among the pairs). Threaded BLAS "
            "suffers most: when a GEMM's worker thread is descheduled the others wait, and small "
            "products slow down by 10–100×. Rerun when the machine is quiet.", ""]


def _error(runs):
    errors = {r["error"] for r in runs if "error" in r}
    return f" ({'; '.join(sorted(errors))})" if errors else ""


def targets(data, has_torch):
    out = []

    def check(ok, text):
        out.append(f"- {'✔' if ok else '✘'} {text}" if ok is not None else f"- (not measured) {text}")

    mlp = data["epochs"].get("mlp", {})
    ratios = pair_ratios(mlp.get("tinynn", []), mlp.get("PyTorch", [])) if has_torch else []
    r = statistics.median(ratios) if ratios else None
    check(None if r is None else r <= 0.8,
          f"MLP epoch tinynn/PyTorch ≤ 0.8 (stretch 0.6): {fmt(r, '.2f')}")
    floor, epoch = med(data["gemm"].get("mlp", {}).get("tinynn", [])), med(mlp.get("tinynn", []))
    check(None if not (floor and epoch) else epoch / floor <= 3,
          f"MLP epoch within 3× the GEMM floor: {fmt(epoch and floor and epoch / floor, '.2f')}×")
    cnn = data["epochs"].get("cnn", {})
    ratios = pair_ratios(cnn.get("tinynn", []), cnn.get("PyTorch", [])) if has_torch else []
    r = statistics.median(ratios) if ratios else None
    check(None if r is None else r <= 1.5,
          f"CNN epoch tinynn/PyTorch ≤ 1.5 (stretch 1.0): {fmt(r, '.2f')}")
    steps = {}
    for name in ("tinynn", "PyTorch"):
        runs = [x for x in data["steps"].get(name, {}).get(32, []) if "seconds" in x]
        steps[name] = statistics.median(x["seconds"] / x["steps"] for x in runs) if runs else None
    check(None if not (steps["tinynn"] and steps["PyTorch"]) else steps["tinynn"] <= steps["PyTorch"],
          f"per-step time at batch 32 no worse than PyTorch's: tinynn "
          f"{fmt(steps['tinynn'] and steps['tinynn'] * 1e6, '.0f')} µs vs PyTorch "
          f"{fmt(steps['PyTorch'] and steps['PyTorch'] * 1e6, '.0f')} µs")
    imp = data["imports"]["tinynn"]["tinynn"]
    check(imp["seconds"] < 0.3 and not {"matplotlib", "ipywidgets"} & set(imp["heavy"]),
          f"`import tinynn` < 0.3 s without matplotlib/ipywidgets: {imp['seconds']:.3f} s, "
          f"heavy modules: {', '.join(imp['heavy']) or 'none'}")
    return out


# =========================================================================== command line

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (smoke test)")
    p.add_argument("--repeats", type=int, default=None, help="A/B pairs per measurement (default 3)")
    p.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp,cnn (default both)")
    p.add_argument("--samples", type=int, default=None, help="samples per epoch (default 60000)")
    p.add_argument("--no-torch", dest="torch", action="store_false",
                   help="skip PyTorch even if it is installed")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="before each measurement, wait up to SECONDS for other jobs to leave the "
                        "CPU idle (on a shared machine)")
    p.add_argument("--retries", type=int, default=0,
                   help="rerun a measurement up to N times while other processes disturbed it")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for both frameworks: PyTorch's and numpy's BLAS (default 2)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"),
                   help="markdown file to write (default benchmarks/RESULTS.md)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(json.loads(args.worker))
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := set(args.models) - {"mlp", "cnn"}:
        p.error(f"unknown model(s) {sorted(unknown)}; choose from mlp, cnn")
    args.repeats = args.repeats or (1 if args.quick else 3)
    # epochs per run, the fastest counts: other jobs only ever add time
    args.epochs = {"mlp": 1, "cnn": 1} if args.quick else {"mlp": 3, "cnn": 2}
    args.samples = args.samples or (256 if args.quick else 60000)
    args.step_samples = 512 if args.quick else 16384
    args.import_repeats = 1 if args.quick else 7
    if args.torch and not torch_available():
        say("PyTorch is not installed: measuring tinynn only (pip install torch to compare)")
        args.torch = False
    command = "python benchmarks/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data = measure(args)
    text = report(data, args, command.strip())
    Path(args.out).write_text(text)
    print(text)
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
