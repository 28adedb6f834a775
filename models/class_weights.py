"""Class weights from dataset pixel statistics (NumPy/pandas only), for the `class_weights` of the losses."""
import numpy as np
import pandas as pd

SCHEMES = ("inverse", "median", "enet", "none")


def class_weights_from_frequencies(pixel_counts_or_freqs, scheme="median"):
    """One weight per class, in the input order; classes with no pixels get weight 0.

    Input: per-class pixel counts or frequencies (sequence, array or Series), or a table (DataFrame or dict)
    with `pixels` (pixels of class c) and `image_pixels` (pixels of the images that contain c); "median"
    needs the table. With p_c = pixels_c / sum(pixels), over the present classes (pixels_c > 0):
    - "inverse": w_c = (1 / p_c) / mean_present(1 / p), so the weights average to 1 over present classes.
    - "median": median-frequency balancing (Eigen & Fergus 2015): f_c = pixels_c / image_pixels_c,
      w_c = median_present(f) / f_c.
    - "enet": w_c = 1 / ln(1.02 + p_c) (Paszke et al. 2016, ENet).
    - "none": w_c = 1 for every class.

    Example:
    >>> class_weights_from_frequencies([30, 10, 0], "inverse")
    array([0.5, 1.5, 0. ])
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    table = isinstance(pixel_counts_or_freqs, (pd.DataFrame, dict))
    pixels = np.asarray(pixel_counts_or_freqs["pixels"] if table else pixel_counts_or_freqs, dtype=np.float64)
    if pixels.ndim != 1 or (pixels < 0).any() or not pixels.sum() > 0:
        raise ValueError("need a 1-D sequence of non-negative per-class pixel counts with a positive sum")
    if scheme == "none":
        return np.ones_like(pixels)
    present = pixels > 0
    weights = np.zeros_like(pixels)
    p = pixels[present] / pixels.sum()
    if scheme == "inverse":
        weights[present] = (1.0 / p) / np.mean(1.0 / p)
    elif scheme == "enet":
        weights[present] = 1.0 / np.log(1.02 + p)
    else:
        if not table:
            raise ValueError("scheme 'median' needs a table with columns 'pixels' and 'image_pixels'")
        image_pixels = np.asarray(pixel_counts_or_freqs["image_pixels"], dtype=np.float64)[present]
        if (image_pixels < pixels[present]).any():
            raise ValueError("image_pixels must be at least pixels for every class")
        freq = pixels[present] / image_pixels
        weights[present] = np.median(freq) / freq
    return weights
