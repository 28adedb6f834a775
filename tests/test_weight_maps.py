"""U-Net border weights on hand-made masks, against the formula with brute-force distances."""
import time

import numpy as np
import pytest

from data.weight_maps import unet_border_weights

pytestmark = pytest.mark.multibackend


def two_squares(gap=2, labels=(1, 1)):
    """20 x 31 mask with two 8 x 8 squares in rows 6..13, columns 5..12 and 13 + gap..20 + gap."""
    mask = np.zeros((20, 31), np.int32)
    mask[6:14, 5:13] = labels[0]
    mask[6:14, 13 + gap:21 + gap] = labels[1]
    return mask


def brute_force_border(objects, w0, sigma):
    """w0 exp(-(d1 + d2)^2 / (2 sigma^2)) on background, d_k = min Euclidean distance to the pixels of object k."""
    rows, cols = np.indices(objects.shape)
    distances = np.sort([np.sqrt((rows[..., None] - np.nonzero(objects == k)[0]) ** 2
                                 + (cols[..., None] - np.nonzero(objects == k)[1]) ** 2).min(-1)
                         for k in range(1, objects.max() + 1)], axis=0)
    border = w0 * np.exp(-(distances[0] + distances[1]) ** 2 / (2 * sigma**2))
    return np.where(objects == 0, border, 0.0)


def test_border_term_matches_formula_and_peaks_in_gap():
    mask = two_squares()
    weights = unet_border_weights(mask, w0=10.0, sigma=5.0, class_balance=False)
    assert weights.dtype == np.float32 and weights.shape == mask.shape
    objects = np.where(mask[:, :14] > 0, 1, 0)
    objects = np.concatenate([objects, np.where(mask[:, 14:] > 0, 2, 0)], axis=1)
    np.testing.assert_allclose(weights, 1.0 + brute_force_border(objects, 10.0, 5.0), rtol=1e-5)
    # gap pixel (9, 13): 1 px from the left square, 2 px from the right one
    assert weights[9, 13] == pytest.approx(1 + 10 * np.exp(-9 / 50), rel=1e-6)
    assert weights[9, 14] == pytest.approx(1 + 10 * np.exp(-9 / 50), rel=1e-6)
    background = np.where(mask == 0, weights, 0)
    assert np.unravel_index(background.argmax(), mask.shape)[1] in (13, 14)
    assert np.all(weights[mask > 0] == 1.0)
    outward = weights[9, 4::-1]  # leaving the left square away from the gap
    assert np.all(np.diff(outward) < 0)
    upward = weights[5::-1, 13]  # leaving the gap upwards
    assert np.all(np.diff(upward) < 0)


def test_wider_gap_lowers_the_peak():
    peaks = [unet_border_weights(two_squares(gap), class_balance=False)[9, 13] for gap in (2, 4, 8)]
    assert peaks[0] > peaks[1] > peaks[2] > 1.0


def test_objects_of_different_classes_and_instances():
    touching = two_squares(gap=0, labels=(1, 2))
    assert unet_border_weights(touching, class_balance=False).max() > 1.0  # two classes: two objects
    same = two_squares(gap=0)
    np.testing.assert_array_equal(unet_border_weights(same, class_balance=False), 1.0)  # one component
    instances = two_squares(gap=0, labels=(7, 3))
    with_instances = unet_border_weights(same, class_balance=False, instances=instances)
    objects = np.where(instances == 7, 1, np.where(instances == 3, 2, 0))
    np.testing.assert_allclose(with_instances, 1.0 + brute_force_border(objects, 10.0, 5.0), rtol=1e-5)


def test_fewer_than_two_objects_has_no_border_term():
    mask = np.zeros((10, 10), np.int32)
    np.testing.assert_array_equal(unet_border_weights(mask, class_balance=False), 1.0)
    mask[2:5, 2:5] = 1
    np.testing.assert_array_equal(unet_border_weights(mask, class_balance=False), 1.0)


def test_class_balance_by_hand():
    mask = np.zeros((4, 5), np.int32)  # 20 pixels: 14 background, 4 of class 1, 2 of class 2 (one object each)
    mask[0, :4] = 1
    mask[3, 3:] = 2
    weights = unet_border_weights(mask, w0=0.0)
    expected = {0: 20 / (3 * 14), 1: 20 / (3 * 4), 2: 20 / (3 * 2)}
    np.testing.assert_allclose(weights, np.vectorize(expected.get)(mask), rtol=1e-6)
    assert weights.mean() == pytest.approx(1.0)
    border = unet_border_weights(mask) - weights
    assert np.all(border[mask > 0] == 0) and np.all(border[mask == 0] > 0)


def test_fast_enough_for_256_with_30_objects():
    mask = np.zeros((256, 256), np.int32)
    for i in range(6):
        for j in range(5):
            mask[8 + 42 * i:38 + 42 * i, 6 + 50 * j:50 + 50 * j] = 1 + (i + j) % 3
    start = time.perf_counter()
    weights = unet_border_weights(mask)
    assert time.perf_counter() - start < 0.5
    assert np.isfinite(weights).all() and weights.max() > 1.0
