"""benchmarks/bench.py's fast-paths table (issue 13): which classes it finds (workloads.py), how
it switches one to its textbook code, and how it reports the saving (report.py). No timing:
synthetic numbers only."""
import json
import subprocess
import sys
from pathlib import Path

import tinynn.conv

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # bench.py's modules, as the script sees them
import report  # noqa: E402
import workloads  # noqa: E402


def test_every_class_with_a_fast_attribute_is_found_without_importing_the_course_modules():
    code = ("import sys, json; sys.path.insert(0, 'benchmarks'); import workloads; "
            "found = workloads.fast_path_classes(); "
            "print(json.dumps([found, [m for m in ('matplotlib', 'ipywidgets') if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""}).stdout
    found, heavy = json.loads(out)
    assert {"tinynn.conv.Conv2D", "tinynn.conv.MaxPool2D"} <= set(found)
    assert heavy == []
    for name in found:  # each defines the attribute itself (subclasses are not listed twice)
        assert "fast" in vars(workloads.resolve(name))


def test_textbook_path_switches_one_class_and_restores_it():
    assert tinynn.conv.Conv2D.fast is True
    with workloads.TextbookPath("tinynn.conv.Conv2D"):
        assert tinynn.conv.Conv2D.fast is False and tinynn.conv.MaxPool2D.fast is True
    assert tinynn.conv.Conv2D.fast is True
    with workloads.TextbookPath(None):  # the all-fast runs
        assert tinynn.conv.Conv2D.fast is True


def test_the_cnn_uses_conv_and_maxpool_fast_paths_and_the_mlp_neither():
    out = workloads.run_fast_classes({"models": ["mlp", "cnn"]})
    assert {"tinynn.conv.Conv2D", "tinynn.conv.MaxPool2D"} <= set(out["used"]["cnn"])
    assert not {"tinynn.conv.Conv2D", "tinynn.conv.MaxPool2D"} & set(out["used"]["mlp"])


def test_the_table_states_the_saved_share_per_class_and_model():
    data = {"fast_paths": {"classes": ["tinynn.conv.Conv2D"],
                           "used": {"cnn": ["tinynn.conv.Conv2D"], "mlp": []}},
            "epochs": {"mlp": {"tinynn": [{"seconds": 1.0}]},
                       "cnn": {"tinynn": [{"seconds": 10.0}, {"seconds": 12.0}]}},
            "textbook": {"cnn": {"tinynn": {"tinynn.conv.Conv2D": [{"seconds": 20.0},
                                                                     {"seconds": 24.0}]}}}}
    text = "\n".join(report.fast_path_lines(data, ["tinynn"]))
    assert "| tinynn.conv.Conv2D | cnn | 11.000 | 22.000 | **50%** | 2.00, 2.00 |" in text
    assert "| tinynn.conv.Conv2D | mlp | – | – | not in this model | – |" in text
