"""benchmarks/bench.py runs end to end on tiny sizes, so it cannot rot unnoticed.

No timing assertions: the numbers of a --quick run mean nothing. PyTorch is compared if installed.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table_rows(markdown, heading):
    """The '| ... |' rows (header and separator skipped) under the '## heading...' section."""
    section = markdown.split("\n## " + heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_quick_benchmark_writes_the_results_table(tmp_path):
    out = tmp_path / "results.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    # Like with like: numpy's BLAS gets the thread count PyTorch gets, whatever the host's cores.
    assert "both frameworks limited to 1 threads" in text
    (blas,) = [line for line in text.splitlines()
               if line.startswith("- BLAS seen by threadpoolctl in the tinynn process")]
    assert "openblas" in blas and ", 1 threads (" in blas and ", 2 threads (" not in blas

    epochs = {row[0]: row for row in table_rows(text, "Seconds per epoch")}
    assert set(epochs) == {"mlp", "cnn"}
    for row in epochs.values():
        float(row[1])  # tinynn's seconds per epoch is a number, not an error

    floors = {row[0]: row for row in table_rows(text, "GEMM floor")}
    assert set(floors) == {"mlp", "cnn"}
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in floors.values())  # GFLOP, s

    steps = {row[0]: row for row in table_rows(text, "Per-step overhead")}
    assert "tinynn" in steps and len(steps["tinynn"]) == 6
    float(steps["tinynn"][1])

    checks = {row[0]: row for row in table_rows(text, "Input checks")}
    assert set(checks) == {"mlp", "cnn"}  # issue 8: validation cost stated for both models
    assert all(row[2].endswith("%") and row[4].endswith("%") for row in checks.values())

    (imports,) = [row for row in table_rows(text, "Import time") if row[0] == "tinynn"]
    assert imports[3].startswith("none")  # import tinynn pulls in no matplotlib, ipywidgets, ...

    (gpt,) = table_rows(text, "GPT training step")  # issue 24: notebook 14's GPT, ms per step
    assert gpt[0] == "gpt"
    float(gpt[1])
    assert text.count("\n- ✔") + text.count("\n- ✘") + text.count("\n- (not measured)") == 6
