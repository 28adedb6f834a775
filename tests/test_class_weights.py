"""Class weights from pixel statistics against hand-computed numbers."""
import warnings

import numpy as np
import pandas as pd
import pytest

from models.class_weights import class_weights_from_frequencies

pytestmark = pytest.mark.multibackend

TABLE = pd.DataFrame({"pixels": [10, 40, 0, 5], "image_pixels": [100, 100, 50, 20]},
                     index=["road", "sky", "boat", "car"])


@pytest.mark.parametrize("counts, scheme, expected", [
    ([30, 10, 0], "inverse", [0.5, 1.5, 0.0]),
    ([0.75, 0.25, 0.0], "inverse", [0.5, 1.5, 0.0]),
    ([60, 30, 10, 0], "enet", [1 / np.log(1.62), 1 / np.log(1.32), 1 / np.log(1.12), 0.0]),
    ([60, 30, 10, 0], "none", [1.0, 1.0, 1.0, 1.0]),
    # f = pixels / image_pixels = [.1, .4, -, .25], median .25
    (TABLE, "median", [2.5, 0.625, 0.0, 1.0]),
    (TABLE.to_dict("list"), "median", [2.5, 0.625, 0.0, 1.0]),
    # 1 / p = 55 / pixels = [5.5, 1.375, -, 11], mean 17.875 / 3
    (TABLE, "inverse", np.array([5.5, 1.375, 0.0, 11.0]) / (17.875 / 3)),
    (TABLE["pixels"], "enet", [1 / np.log(1.02 + 10 / 55), 1 / np.log(1.02 + 40 / 55), 0.0,
                               1 / np.log(1.02 + 5 / 55)]),
])
def test_schemes_by_hand(counts, scheme, expected):
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        weights = class_weights_from_frequencies(counts, scheme)
    np.testing.assert_allclose(weights, expected, rtol=1e-12)


def test_inverse_weights_average_to_one_over_present_classes():
    weights = class_weights_from_frequencies([5, 0, 100, 1, 0, 42], "inverse")
    assert weights[[0, 2, 3, 5]].mean() == pytest.approx(1.0) and not weights[[1, 4]].any()


@pytest.mark.parametrize("counts, scheme, match", [
    ([1, 2], "log", "scheme"),
    ([1, 2], "median", "image_pixels"),
    ([1, -2], "inverse", "non-negative"),
    ([0, 0], "inverse", "positive sum"),
    (pd.DataFrame({"pixels": [5, 1], "image_pixels": [4, 10]}), "median", "at least"),
])
def test_errors(counts, scheme, match):
    with pytest.raises(ValueError, match=match):
        class_weights_from_frequencies(counts, scheme)
