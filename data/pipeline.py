"""tf.data pipeline: parallel read, decode and augment; batch; prefetch; optional cache; seeded."""
import threading

import numpy as np
import tensorflow as tf

from data import augment
from data.images import read_image
from data.masks import IGNORE_INDEX, read_instances
from data.multilabel import is_multilabel
from data.weight_maps import unet_border_weights


class _ThreadLocalTransform:
    """One albumentations pipeline per worker thread, re-seeded per sample for reproducibility."""

    def __init__(self, factory):
        self._factory = factory
        self._local = threading.local()

    def __call__(self, seed, **targets):
        transform = getattr(self._local, "transform", None)
        if transform is None:
            transform = self._local.transform = self._factory()
        transform.set_random_seed(int(seed))
        return transform(**targets)


def build_dataset(frame, encoding, *, training, batch_size, channels=3, crop_size=None, resize=None, divisor=1,
                  augment_options=None, border_weights=None, one_hot=False, cache=False, seed=0, normalization=None,
                  repeat=False):
    """Dataset of (image, mask) or (image, mask, pixel_weights) batches from a discovery frame.

    Args:
        frame: DataFrame with columns image, mask and instances (see `data.discovery.discover`).
        encoding: `data.masks.MaskEncoding` that decodes the masks.
        training: shuffle and augment (random scale/rotate, crop to `crop_size`, flips, colour); otherwise
            only resize and pad to a multiple of `divisor`, batched with padding that is ignored.
        batch_size: images per batch.
        channels: channels the model takes (grey and RGB files are converted).
        crop_size: (H, W) of training crops.
        resize: optional (H, W) applied to every image and mask first.
        divisor: evaluation images are padded to a multiple of it (the model's output stride).
        augment_options: overrides of `data.augment.DEFAULT_AUGMENT`.
        border_weights: dict of `unet_border_weights` options (w0, sigma, ...) to yield U-Net weight maps as a
            third element, from the instance maps where the frame has them, else from connected components.
        one_hot: yield one-hot float masks (void pixels all zero) instead of class-index int32 masks.
        cache: keep decoded images in memory after the first epoch.
        seed: shuffling and augmentation seed; the same seed gives the same batches.
        normalization: `data.normalization.Normalization` of the raw values; None scales by the dtype's range.
        repeat: (training) an endless stream of passes, each reshuffled, batched across pass ends so that every
            batch is full; epochs are then counted in steps (Keras `steps_per_epoch`) and never run out of input.

    Images are float32 in [0, 1]; masks int32 with void and padding as IGNORE_INDEX. Multi-label encodings
    (`data.multilabel`) yield float32 (H, W, C) multi-hot masks: 0, 1, and IGNORE_INDEX per pixel and class on
    void and padding (no `one_hot`, no `border_weights`).
    """
    if training and crop_size is None:
        raise ValueError("training datasets need crop_size (H, W)")
    multilabel = is_multilabel(encoding)
    if multilabel and border_weights is not None:
        raise ValueError("loss.border_weights needs class-index masks, not multi-label masks")
    mask_shape = [encoding.num_classes] if multilabel else []
    paths = frame.reset_index(drop=True)
    use_instances = border_weights is not None and paths["instances"].notna().all()

    def load(index):
        row = paths.iloc[int(index)]
        image = read_image(row["image"], channels, normalization)
        mask = encoding.read(row["mask"])
        instances = read_instances(row["instances"]) if use_instances else np.zeros((0, 0), np.int32)
        return image, mask, instances

    def load_tf(index):
        image, mask, instances = tf.numpy_function(load, [index], [tf.float32, tf.uint8, tf.int32])
        image.set_shape([None, None, channels])
        mask.set_shape([None, None] + mask_shape)
        instances.set_shape([None, None])
        return image, mask, instances

    if training:
        transform = _ThreadLocalTransform(lambda: augment.train_transform(crop_size, resize, **(augment_options or {})))
    else:
        transform = _ThreadLocalTransform(lambda: augment.eval_transform(divisor, resize))

    def apply(image, mask, instances, sample_seed):
        masks = [mask, instances] if use_instances else [mask]
        out = transform(sample_seed, image=image, masks=masks)
        image, mask = out["image"], out["masks"][0]
        if border_weights is None:
            return image, mask, np.zeros((0, 0), np.float32)
        objects = out["masks"][1] if use_instances else None
        labels = np.where(mask == IGNORE_INDEX, 0, mask)
        weights = unet_border_weights(labels, instances=objects, **border_weights)
        return image, mask, weights.astype(np.float32)

    def apply_tf(loaded, sample_seed):
        image, mask, weights = tf.numpy_function(apply, [*loaded, sample_seed], [tf.float32, tf.uint8, tf.float32])
        size = list(crop_size) if training else [None, None]
        image.set_shape(size + [channels])
        mask.set_shape(size + mask_shape)
        weights.set_shape(size)
        mask = tf.cast(mask, tf.float32 if multilabel else tf.int32)
        if one_hot and not multilabel:
            mask = tf.one_hot(mask, encoding.num_classes, dtype=tf.float32)
        return (image, mask, weights) if border_weights is not None else (image, mask)

    dataset = tf.data.Dataset.range(len(paths)).map(load_tf, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).map(lambda s: s % (2**31 - 1))
    dataset = tf.data.Dataset.zip(dataset, seeds).map(apply_tf, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        dataset = dataset.batch(batch_size)
    else:
        mask_pad = tf.constant(0.0) if one_hot else tf.constant(IGNORE_INDEX, tf.int32)
        if multilabel:
            mask_pad = tf.constant(float(IGNORE_INDEX))
        padding = (tf.constant(0.0), mask_pad, tf.constant(0.0))[: 3 if border_weights is not None else 2]
        dataset = dataset.padded_batch(batch_size, padding_values=padding)
    return dataset.prefetch(tf.data.AUTOTUNE)


def eval_batch_pixels(sizes, batch_size, divisor=1, resize=None):
    """Pixels of each evaluation batch as `build_dataset(training=False)` pads it, from the images' (H, W) in
    the frame's order: a cost measure for timing a few batches and scaling to the split."""
    sides = np.array([resize if resize else size for size in sizes], dtype=np.int64).reshape(-1, 2)
    sides = -(-sides // divisor) * divisor
    return [len(chunk) * int(chunk[:, 0].max()) * int(chunk[:, 1].max())
            for chunk in (sides[i:i + batch_size] for i in range(0, len(sides), batch_size))]

