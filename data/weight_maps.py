"""Per-pixel loss weight maps (NumPy + OpenCV), used as Keras `sample_weight` of the segmentation losses."""
import cv2
import numpy as np


def _objects(labels, instances):
    """Object map: 0 outside objects, 1..K inside; from `instances` (ids > 0) or per-class connected components."""
    if instances is not None:
        ids, objects = np.unique(np.asarray(instances), return_inverse=True)
        objects = objects.reshape(labels.shape)
        return objects if ids[0] == 0 else objects + 1
    objects = np.zeros(labels.shape, np.int32)
    for c in np.unique(labels[labels > 0]):
        _, components = cv2.connectedComponents((labels == c).astype(np.uint8), connectivity=8)
        inside = components > 0
        objects[inside] = components[inside] + objects.max()
    return objects


def unet_border_weights(labels, w0=10.0, sigma=5.0, class_balance=True, instances=None):
    """U-Net weight map (Ronneberger et al. 2015): w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2)).

    - Objects: the given `instances` map (ids > 0, 0 = no object), else the 8-connected components of each
      foreground class (labels > 0; 0 is background). d1, d2: Euclidean distances (cv2.distanceTransform,
      exact) to the nearest and second-nearest object.
    - The border term applies to pixels outside every object (background), and is 0 with fewer than 2 objects.
    - w_c(x) = N / (K n_{c(x)}) with N pixels, K classes present in the image and n_c pixels of class c:
      each present class carries the same total weight and w_c averages to 1 over the image.
      `class_balance=False` gives w_c = 1.

    Args:
        labels: (H, W) int array of class indices (void already mapped to a class, e.g. background).
        w0: float. Border weight. Defaults to `10.0`.
        sigma: float. Border width in pixels. Defaults to `5.0`.
        class_balance: bool. Defaults to `True`.
        instances: optional (H, W) int instance map. Defaults to `None`.

    Returns:
        (H, W) float32 weights.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {labels.shape}")
    if class_balance:
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        weights = (labels.size / (len(counts) * counts))[inverse.reshape(labels.shape)].astype(np.float32)
    else:
        weights = np.ones(labels.shape, np.float32)
    objects = _objects(labels, instances)
    if objects.max() < 2 or w0 == 0:
        return weights
    d1 = np.full(labels.shape, np.inf, np.float32)
    d2 = d1.copy()
    for k in range(1, objects.max() + 1):
        d = cv2.distanceTransform((objects != k).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    border = w0 * np.exp(-np.square(d1 + d2) / (2.0 * sigma**2))
    return (weights + np.where(objects == 0, border, 0.0)).astype(np.float32)
