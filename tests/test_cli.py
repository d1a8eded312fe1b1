"""The command line, ``python -m tinynn``: the README's main job (train the MNIST MLP to the
issue's accuracy), the data check, and clear refusals of bad arguments."""
import re

import numpy as np
import pytest

import tinynn as tn
from conftest_helpers import offline_mnist, one_blas_thread
from tinynn.__main__ import main


def run(capsys, *argv):
    """main(argv) in this process; returns (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse: --help, or a bad argument
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_names_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert all(command in out for command in ("train", "data", "student"))
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    assert all(option in out for option in ("--model", "--epochs", "--lr", "--average", "--seed"))


def test_train_mlp_reaches_97_8_percent_in_5_epochs(monkeypatch, capsys):
    """Issue 2's number: 784-200-100-10 ReLU, Adam 1e-3, batch 128, 5 epochs, evaluated with
    the moving average of the weights (--average 0.995, the default). Seeds 0–7 measured
    97.95–98.21%; the last step's weights alone average 97.75% (97.51% for seed 0)."""
    offline_mnist(monkeypatch)
    with one_blas_thread():
        code, out, _ = run(capsys, "train", "--model", "mlp", "--quiet")
    assert code == 0
    lines = out.strip().splitlines()
    assert len([line for line in lines if line.startswith("epoch ")]) == 5
    match = re.fullmatch(r"test accuracy: (\d+\.\d\d)%", lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) >= 97.8


def test_data_checks_the_cache(monkeypatch, capsys):
    offline_mnist(monkeypatch)
    code, out, _ = run(capsys, "data", "--quiet")
    assert code == 0
    assert "MNIST cache ok" in out and "60000 training and 10000 test images" in out
    assert "names ok" in out and "(32033 names)" in out


@pytest.mark.parametrize("argv, words", [
    (["train", "--epochs", "-1"], ["--epochs", ">= 0"]),
    (["train", "--batch-size", "0"], ["--batch-size", "positive integer"]),
    (["train", "--lr", "0"], ["--lr", "positive number"]),
    (["train", "--average", "1"], ["--average", "[0, 1)"]),
    (["train", "--model", "rnn"], ["--model", "invalid choice", "cnn", "mlp"]),
    (["train", "--optimizer", "adagrad"], ["--optimizer", "invalid choice", "adam"]),
    (["train", "--model", "gpt", "--steps", "0"], ["--steps", "positive integer"]),
    (["train", "--model", "gpt", "--epochs", "2"], ["--epochs", "does not apply", "--steps"]),
    (["train", "--model", "mlp", "--steps", "100"], ["--steps", "does not apply", "--epochs"]),
    (["fly"], ["invalid choice", "train"]),
])
def test_bad_arguments_exit_2_with_a_clear_message(capsys, argv, words):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert all(word in err for word in words), err


def offline_names(monkeypatch):
    """names.txt from the cache or the local mirror (never the network), else skip."""
    import tinynn.datasets
    monkeypatch.setattr(tinynn.datasets, "MIRRORS", ())
    monkeypatch.setattr(tinynn.datasets, "NAMES_MIRRORS", ())
    try:
        return tinynn.datasets.load_names(progress=False)
    except tn.DataError as err:
        pytest.skip(f"names.txt is not available offline here: {err}")


def test_train_gpt_reports_progress_held_out_nll_samples_and_saves(monkeypatch, capsys,
                                                                   tmp_path):
    """A tiny run of notebook 14's GPT (20 steps): the header, a progress line per 2 steps, the
    held-out NLL per character beside the bigram table's (2.45), 10 samples, a loadable file."""
    offline_names(monkeypatch)
    path = tmp_path / "gpt.npz"
    with one_blas_thread():
        code, out, _ = run(capsys, "train", "--model", "gpt", "--steps", "20", "--quiet",
                           "--save", str(path), "--seed", "3")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("training a gpt (2 blocks, width 64, 4 heads, context 16) on "
                               "28830 names: 20 steps, batch 32, adam lr 0.003")
    assert lines[0].endswith("seed 3")
    progress = [line for line in lines if line.startswith("step ")]
    assert [line.split(":")[0] for line in progress] == [f"step {s}/20" for s in range(2, 21, 2)]
    assert all(re.fullmatch(r"step \d+/20: loss \d+\.\d{4}  \(\d+\.\d s\)", line)
               for line in progress), progress
    assert f"saved to {path}" in lines
    (nll,) = [line for line in lines if line.startswith("held-out NLL")]
    match = re.fullmatch(r"held-out NLL per character \(3203 validation names\): gpt "
                         r"(\d+\.\d{4}), bigram count table 2\.4499", nll)
    assert match, nll
    assert 1.5 < float(match.group(1)) < 10  # after 20 steps: a number, not yet a good one
    assert lines[-1].startswith("samples: ") and lines[-1].count(", ") == 9

    model = tn.Model(tn.models.build_gpt(27, 16), tn.SoftmaxCrossEntropy(), tn.Adam())
    model.load(path)
    ids = np.zeros((2, 16), np.int64)
    assert model.predict(ids).shape == (2, 16, 27)
