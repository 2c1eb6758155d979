"""Calibrated thresholds on cases whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from tripletlab.index import Calibration, Threshold, calibrate


def test_thresholds_known_by_construction():
    # Sorted by distance: 8 right, then 1 wrong, then 1 right, then 10 wrong.
    distances = np.arange(1, 21) / 10.0
    correct = np.array([True] * 8 + [False, True] + [False] * 10)
    rng = np.random.default_rng(0)
    order = rng.permutation(20)  # the input order does not matter
    found = calibrate(distances[order], correct[order], (0.5, 0.9, 0.95, 1.0))
    # 0.5: the largest prefix with precision >= 0.5: 9 right of 18 at distance 1.8.
    assert found[0] == Threshold(0.5, 1.8, 0.5, 1.0, 0.9)
    # 0.9: 9 of 10 at 1.0 (precision 0.9, recall 9 / 9).
    assert found[1] == Threshold(0.9, 1.0, 0.9, 1.0, 0.5)
    # 0.95 and 1.0: the first 8 (all right), recall 8 / 9.
    assert found[2].distance == found[3].distance == pytest.approx(0.8)
    assert found[3].precision == 1.0 and found[3].recall == pytest.approx(8 / 9)


def test_equal_distances_are_accepted_together():
    # At 0.2 one right and one wrong item tie: a threshold takes both or neither.
    found = calibrate(np.array([0.1, 0.2, 0.2, 0.3]), np.array([True, True, False, True]), (1.0,))
    assert found[0].distance == 0.1 and found[0].answered == 0.25


def test_an_unreachable_precision_is_reported_as_such():
    found = calibrate(np.array([0.1, 0.2]), np.array([False, True]), (0.9,))
    assert found[0].distance is None and found[0].precision == 0.5
    calibration = Calibration(tuple(found), 2, "val")
    with pytest.raises(ValueError, match="not reached"):
        calibration.threshold_for(0.9)
    with pytest.raises(ValueError, match=r"not calibrated; calibrated: 0\.9"):
        calibration.threshold_for(0.5)
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_open_set_impostors_tighten_the_threshold():
    # Known queries all right at 0.1 .. 1.0; impostors (other classes) from 0.55 on.
    known = np.linspace(0.1, 1.0, 10)
    impostors = np.array([0.55, 0.65, 2.0, 3.0])
    closed = calibrate(known, np.ones(10, dtype=bool), (0.99,))[0]
    opened = calibrate(known, np.ones(10, dtype=bool), (0.99,), impostors)[0]
    assert closed.distance == pytest.approx(1.0)
    assert opened.distance == pytest.approx(0.5)  # below the first impostor
    assert opened.recall == pytest.approx(0.5) and opened.answered == pytest.approx(0.5)
    assert opened.impostors_accepted == 0.0
    loose = calibrate(known, np.ones(10, dtype=bool), (0.8,), impostors)[0]
    assert loose.distance == pytest.approx(1.0) and loose.impostors_accepted == 0.5


def test_bad_inputs():
    with pytest.raises(ValueError, match="Q >= 1"):
        calibrate(np.array([]), np.array([], dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        calibrate(np.array([np.nan]), np.array([True]))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        calibrate(np.array([0.1]), np.array([True]), (1.5,))
