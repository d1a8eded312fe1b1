#!/usr/bin/env python
"""tinynn against PyTorch CPU on MNIST-shaped data: seconds per epoch, GEMM floor, per-step
overhead and import time; and a training step of notebook 14's GPT. Writes a markdown table to
benchmarks/RESULTS.md.

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
- GPT (issue 24): notebook 14's model (tinynn.models.build_gpt(27, 16, dim=64, heads=4,
  layers=2)), batch 32, context 16, Adam, on synthetic token ids; each run times a few stretches
  of --gpt-steps steps and keeps the fastest; the table gives milliseconds per step. PyTorch runs
  the same architecture written as usual (nanoGPT's way: one fused q/k/v Linear,
  F.scaled_dot_product_attention with is_causal=True, nn.LayerNorm, GELU with the tanh
  approximation).
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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its modules, however it is loaded
from harness import ROOT, measure, say, torch_available  # noqa: E402
from report import report  # noqa: E402
from workloads import worker  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (smoke test)")
    p.add_argument("--repeats", type=int, default=None, help="A/B pairs per measurement (default 3)")
    p.add_argument("--models", default="mlp,cnn,gpt",
                   help="comma-separated: mlp,cnn,gpt (default all three)")
    p.add_argument("--samples", type=int, default=None,
                   help="MNIST samples per epoch (default 60000)")
    p.add_argument("--gpt-steps", type=int, default=None,
                   help="GPT steps per timed run (default 200)")
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
    unknown = set(args.models) - {"mlp", "cnn", "gpt"}
    if unknown:
        p.error(f"unknown model(s) {sorted(unknown)}; choose from mlp, cnn, gpt")
    args.repeats = args.repeats or (1 if args.quick else 3)
    # epochs per run, the fastest counts: other jobs only ever add time
    args.epochs = {"mlp": 1, "cnn": 1, "gpt": 1} if args.quick else {"mlp": 3, "cnn": 2, "gpt": 3}
    args.samples = args.samples or (256 if args.quick else 60000)
    args.gpt_steps = args.gpt_steps or (2 if args.quick else 200)
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
