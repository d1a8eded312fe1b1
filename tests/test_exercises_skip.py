"""Notebook 05's skip-connection exercise: the check accepts dL/dx = G + block's backward and
names the ways the two paths get mis-combined (tinynn/course/exercises/n05_net_and_model.py)."""
import pytest

from tinynn.course.exercises import check_skip_backward
from tinynn.course.grading import grade


def through(block, grad):
    for layer in reversed(block):
        grad = layer.backward(grad)
    return grad


def test_the_two_paths_added_pass_the_check_and_the_hidden_test(capsys):
    def skip_backward(block, grad):
        return grad + through(block, grad)
    assert check_skip_backward(skip_backward) is True
    assert "✔" in capsys.readouterr().out
    grade("skip_backward", skip_backward)


@pytest.mark.parametrize("wrong, words", [
    (lambda b, g: through(b, g), ["only the gradient through the block", "add"]),
    (lambda b, g: g, ["only G", "block.backward(G)"]),
    (lambda b, g: g * through(b, g), ["multiplies the two paths"]),
    (lambda b, g: (g + through(b, g)) / 2, ["averages"]),
    (lambda b, g: g - through(b, g), ["subtracts"]),
], ids=["block-only", "identity-only", "product", "average", "difference"])
def test_each_wrong_combination_is_named(capsys, wrong, words):
    assert check_skip_backward(wrong) is False
    out = capsys.readouterr().out
    assert out.startswith("✘") and all(w in out for w in words), out


def test_a_wrong_answer_without_a_name_fails_on_dl_dx(capsys):
    assert check_skip_backward(lambda b, g: 2 * g) is False
    assert "dL/dx" in capsys.readouterr().out


def test_an_unfinished_exercise_is_not_yet_implemented(capsys):
    def skip_backward(block, grad):
        raise NotImplementedError()
    assert check_skip_backward(skip_backward) is False
    assert "not yet implemented" in capsys.readouterr().out
