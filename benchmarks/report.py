"""The report of benchmarks/bench.py: the measurements as the markdown of RESULTS.md, one
section per function."""
import os
import platform
import statistics
from datetime import datetime, timezone

from harness import DISTURBED, cpu_model


def med(runs, key="seconds"):
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def fmt(value, spec=".3f", missing="–"):
    return missing if value is None else format(value, spec)


def pair_ratios(a_runs, b_runs):
    return [a["seconds"] / b["seconds"] for a, b in zip(a_runs, b_runs)
            if "seconds" in a and "seconds" in b]


def report(data, args, command):
    """RESULTS.md: the header and machine, then one section per measurement, then the targets."""
    runners = data["runners"]
    tinynn_names = [n for n in runners if n != "PyTorch"]
    has_torch = "PyTorch" in runners
    lines = (header_lines(data, args, command) + machine_lines(data, args)
             + epoch_lines(data, args, runners, tinynn_names, has_torch)
             + gpt_lines(data, args, runners, tinynn_names, has_torch)
             + gemm_lines(data, has_torch) + step_lines(data, args) + input_check_lines(data)
             + fast_path_lines(data, tinynn_names) + import_lines(data, args)
             + ["", "## Targets (issues 7 and 24)", ""] + targets(data, has_torch))
    return "\n".join(lines) + "\n"


def header_lines(data, args, command):
    return [
        "# tinynn benchmark results", "",
        f"Command: `{command}`  ",
        f"Date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"{'QUICK (tiny sizes: numbers mean nothing)' if args.quick else 'full run'}; "
        f"{args.repeats} repeat(s), {args.samples} samples per epoch; both frameworks limited "
        f"to {args.threads} threads (PyTorch: torch.set_num_threads; numpy's BLAS: threadpoolctl).",
        "",
        *busy_warning(data)]


def machine_lines(data, args):
    """The CPU, its load, the library versions and the BLAS each process ran."""
    facts = data["facts"]
    t0, torch_facts = facts.get("tinynn", {}), facts.get("PyTorch", {})
    lines = [
        "## Machine and libraries", "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores "
        f"({len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'} usable); "
        f"{platform.system()} {platform.release()}",
        f"- Load average (1/5/15 min) at the start: "
        f"{' / '.join(f'{v:.1f}' for v in data['load_before'])}; {data['disturbed']} of "
        f"{data['runs']} measurements disturbed (other processes used > {DISTURBED} core while "
        f"they ran{f', after up to {args.retries} retries' if args.retries else ''})",
        f"- Python {t0.get('python', '?')}, numpy {t0.get('numpy', '?')}, tinynn {t0.get('tinynn', '?')}, "
        + (f"PyTorch {torch_facts.get('torch', '?')} ({torch_facts.get('torch_blas')}, "
           f"{torch_facts.get('torch_cpu_capability')}, "
           f"{torch_facts.get('torch_threads')} threads)" if "PyTorch" in data["runners"]
           else "PyTorch not measured (--no-torch, or not installed: `pip install torch` to compare; "
                "it is never a tinynn dependency)"),
        "- OpenBLAS overrides in the environment: "
        + (", ".join(f"{k}={v}" for k, v in data["openblas_set"].items()) if data["openblas_set"]
           else "none (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset)"),
    ]
    for name in data["runners"]:
        blas = facts.get(name, {}).get("blas")
        if isinstance(blas, list):
            blas = "; ".join(f"{b['internal_api']} {b['version']} kernel {b['architecture']}, "
                             f"{b['num_threads']} threads ({b['threading_layer']})" for b in blas)
        lines.append(f"- BLAS seen by threadpoolctl in the {name} process: {blas or 'none loaded'}")
    return lines


def epoch_lines(data, args, runners, tinynn_names, has_torch):
    """Seconds per epoch of each framework, and tinynn / PyTorch per A/B pair."""
    lines = ["", f"## Seconds per epoch ({args.samples} samples, batch 128, Adam 1e-3, softmax-CE)",
             "", f"Each run: the fastest of {args.epochs['mlp']} (MLP) / {args.epochs['cnn']} (CNN) "
             "epochs in a fresh process; the table shows the median over runs.", ""]
    header = "| model | " + " | ".join(f"{n} s/epoch" for n in runners)
    sep = "|---|" + "---|" * len(runners)
    if has_torch:
        header += " | " + " | ".join(f"{n} / PyTorch (median of pairs) | pairs" for n in tinynn_names)
        sep += "---|---|" * len(tinynn_names)
    lines += [header + " |", sep]
    for model, per_runner in data["epochs"].items():
        if model == "gpt":  # its own section, per step
            continue
        row = [model] + [fmt(med(per_runner.get(n, []))) + _error(per_runner.get(n, []))
                         for n in runners]
        if has_torch:
            for n in tinynn_names:
                ratios = pair_ratios(per_runner.get(n, []), per_runner.get("PyTorch", []))
                row += [f"**{fmt(statistics.median(ratios) if ratios else None, '.2f')}**",
                        ", ".join(f"{r:.2f}" for r in ratios) or "–"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def gpt_lines(data, args, runners, tinynn_names, has_torch):
    """Milliseconds per training step of notebook 14's GPT, and tinynn / PyTorch per A/B pair."""
    per_runner = data["epochs"].get("gpt")
    if per_runner is None:
        return []
    lines = ["", "## GPT training step (issue 24: notebook 14's model, batch 32, context 16, Adam)",
             "", "build_gpt(27, 16, dim=64, heads=4, layers=2), 104k parameters, on synthetic "
             f"token ids. Each run: the fastest of {args.epochs['gpt']} stretches of "
             f"{args.gpt_steps} steps in a fresh process (fit with its per-batch loss and "
             "accuracy bookkeeping; PyTorch: the usual loop, nanoGPT's fused q/k/v and "
             "F.scaled_dot_product_attention); the table shows the median over runs.", "",
             "| model | " + " | ".join(f"{n} ms/step" for n in runners)
             + (" | " + " | ".join(f"{n} / PyTorch (median of pairs) | pairs"
                                   for n in tinynn_names) if has_torch else "") + " |",
             "|---|" + "---|" * len(runners) + ("---|---|" * len(tinynn_names) if has_torch else "")]
    row = ["gpt"] + [fmt(_per_step(per_runner.get(n, [])), ".2f") + _error(per_runner.get(n, []))
                     for n in runners]
    if has_torch:
        for n in tinynn_names:
            ratios = pair_ratios(per_runner.get(n, []), per_runner.get("PyTorch", []))
            row += [f"**{fmt(statistics.median(ratios) if ratios else None, '.2f')}**",
                    ", ".join(f"{r:.2f}" for r in ratios) or "–"]
    return lines + ["| " + " | ".join(row) + " |"]


def _per_step(runs):
    """Median milliseconds per step of runs that report seconds and steps."""
    values = [1e3 * r["seconds"] / r["steps"] for r in runs if "seconds" in r and "steps" in r]
    return statistics.median(values) if values else None


def gemm_lines(data, has_torch):
    """The GEMM floor of each model, how close each framework's epoch gets, the BLAS peak."""
    lines = ["", "## GEMM floor (plain numpy, the same matrix products, operands preallocated)", "",
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
    return lines + gemm_shape_lines(data)


def gemm_shape_lines(data):
    shapes = [r["shapes"] for runs in data["gemm"].get("mlp", {}).values() for r in runs
              if "shapes" in r][:1] + \
             [r["shapes"] for runs in data["gemm"].get("cnn", {}).values() for r in runs
              if "shapes" in r][:1]
    if not shapes:
        return []
    return ["GEMM shapes per step (M, K, N): " + "; ".join(
        str([tuple(s) for s in sh]) for sh in shapes) + ". FLOPs count forward, weight "
        "gradient, and the input gradient of every layer but the first."]


def step_lines(data, args):
    """Time per step at batch 32 and 512, and the fixed cost of a step solved from the two."""
    lines = ["", f"## Per-step overhead (MLP, {args.step_samples} samples per run)", "",
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
    return lines + ["", "Fixed cost per step: t(b) = overhead + b · per-sample, solved through "
                        "batch 32 and 512 (what a step costs apart from the arithmetic)."]


def import_lines(data, args):
    lines = ["", f"## Import time (fresh process, bytecode cached, median of {args.import_repeats})",
             "", "| variant | `import numpy` s | `import tinynn` s (numpy included) | heavy modules "
             "pulled in by `import tinynn` |", "|---|---|---|---|"]
    for name, imp in data["imports"].items():
        heavy = imp["tinynn"]["heavy"]
        lines.append(f"| {name} | {imp['numpy']['seconds']:.3f} | {imp['tinynn']['seconds']:.3f} | "
                     f"{', '.join(heavy) if heavy else 'none (no matplotlib, ipywidgets, tqdm, torch)'} |")
    return lines


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
            "runs right after an all-fast one). The gpt's \"epoch\" is one timed stretch of "
            "its steps (see the GPT section).")
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
    gpt = data["epochs"].get("gpt", {})
    ratios = pair_ratios(gpt.get("tinynn", []), gpt.get("PyTorch", [])) if has_torch else []
    r = statistics.median(ratios) if ratios else None
    check(None if r is None else r <= 1.5,
          f"GPT training step tinynn/PyTorch ≤ 1.5 (issue 24): {fmt(r, '.2f')}")
    imp = data["imports"]["tinynn"]["tinynn"]
    check(imp["seconds"] < 0.3 and not {"matplotlib", "ipywidgets"} & set(imp["heavy"]),
          f"`import tinynn` < 0.3 s without matplotlib/ipywidgets: {imp['seconds']:.3f} s, "
          f"heavy modules: {', '.join(imp['heavy']) or 'none'}")
    return out
