"""tinynn.metrics.calibration against a reliability table worked out by hand."""
import numpy as np
import pytest

import tinynn as tn


def test_calibration_matches_a_table_worked_out_by_hand():
    probs = np.array([[0.90, 0.05, 0.05],    # conf 0.9,  right  -> bin (0.75, 1]
                      [0.80, 0.10, 0.10],    # conf 0.8,  wrong  -> bin (0.75, 1]
                      [0.60, 0.30, 0.10],    # conf 0.6,  right  -> bin (0.5, 0.75]
                      [0.25, 0.40, 0.35],    # conf 0.4,  right  -> bin (0.25, 0.5]
                      [0.35, 0.25, 0.40]])   # conf 0.4,  wrong  -> bin (0.25, 0.5]
    labels = np.array([0, 1, 0, 1, 0])
    table = tn.calibration(probs, labels, bins=4)
    np.testing.assert_allclose(table["edges"], [0, 0.25, 0.5, 0.75, 1])
    assert table["count"].tolist() == [0, 2, 1, 2]
    assert np.isnan(table["confidence"][0]) and np.isnan(table["accuracy"][0])
    np.testing.assert_allclose(table["confidence"][1:], [0.4, 0.6, 0.85])
    np.testing.assert_allclose(table["accuracy"][1:], [0.5, 1.0, 0.5])
    # (2·|0.5 − 0.4| + 1·|1 − 0.6| + 2·|0.5 − 0.85|) / 5 = (0.2 + 0.4 + 0.7) / 5
    assert table["ece"] == pytest.approx(0.26)


def test_a_bin_is_closed_on_the_right_and_one_hot_targets_work():
    probs = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.75, 0.25, 0.0]])
    table = tn.calibration(probs, np.eye(3)[[0, 0, 1]], bins=4)
    assert table["count"].tolist() == [0, 1, 1, 1]    # 0.5 in (0.25, 0.5], 0.75 in (0.5, 0.75]


def test_always_certain_scores_one_minus_accuracy_and_a_calibrated_guess_scores_0():
    labels = np.array([0, 1, 2, 0, 1, 1, 2, 0])
    certain = np.eye(3)[[0, 1, 2, 2, 2, 1, 2, 0]]        # 6 of 8 right, all with confidence 1
    assert tn.calibration(certain, labels)["ece"] == pytest.approx(0.25)
    probs = np.array([[0.5, 0.5]] * 4)                    # says 0.5, right half the time
    assert tn.calibration(probs, np.array([0, 1, 0, 1]))["ece"] == pytest.approx(0.0)


def test_calibration_refuses_logits_of_the_wrong_shape():
    with pytest.raises(tn.ShapeError):
        tn.calibration(np.array([0.2, 0.9]), np.array([0, 1]))
    with pytest.raises(tn.ShapeError):
        tn.calibration(np.full((3, 2), 0.5), np.array([0, 1]))
