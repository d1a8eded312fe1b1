"""The parent side of benchmarks/bench.py: plan the measurements, run each in a fresh worker
process (``bench.py --worker``), keep the machine quiet enough, and collect the results.

Frameworks alternate (tinynn, PyTorch, tinynn, ...) so drifts in machine load hit both alike; a
run that other processes disturbed (they used more than ``DISTURBED`` cores meanwhile) is
retried up to ``--retries`` times, and counted.
"""
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from workloads import GPT_BATCH, MARK, OPENBLAS_VARS

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().with_name("bench.py")  # the script the workers run
HEAVY_MODULES = ("matplotlib", "ipywidgets", "tqdm", "torch")
DISTURBED = 0.1  # other processes' CPU use, in cores, above which a measurement is disturbed


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
    proc = subprocess.run([sys.executable, str(BENCH), "--worker", json.dumps(jobs)], env=env,
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
    def job(kind, model="mlp", n=None, batch=None, **extra):
        gpt = model == "gpt"  # an "epoch" of the GPT: --gpt-steps steps of batch 32
        batch = batch or (GPT_BATCH if gpt else 128)
        n = n or (args.gpt_steps * batch if gpt else args.samples)
        return {"framework": framework, "kind": kind, "model": model, "n": n, "batch": batch,
                "seed": repeat, "epochs": args.epochs[model], "threads": args.threads, **extra}
    groups = [[job("facts")]] if repeat == 0 else []
    for model in args.models:
        groups.append([job("epoch", model)])
        if model != "gpt":  # the GEMM floor is worked out for Dense and Conv2D nets only
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
