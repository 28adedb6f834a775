import numpy as np
import pandas as pd
import pytest

from data.discovery import discover
from data.masks import IGNORE_INDEX, MaskEncoding
from data.pipeline import build_dataset, eval_batch_pixels
from data.synthetic import write_shapes_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = write_shapes_dataset(tmp_path_factory.mktemp("shapes"), count=6, size=(40, 56), num_classes=3)
    return discover(root, val_fraction=0.0)


def _batches(dataset):
    return [tuple(np.asarray(t) for t in batch) for batch in dataset]


def test_training_batches_have_crop_shape_and_valid_labels(shapes):
    ds = build_dataset(shapes, MaskEncoding("index", 3), training=True, batch_size=4, crop_size=(32, 32))
    batches = _batches(ds)
    assert [b[0].shape for b in batches] == [(4, 32, 32, 3), (2, 32, 32, 3)]
    image, mask = batches[0]
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    assert mask.dtype == np.int32
    assert set(np.unique(mask)) <= {0, 1, 2, IGNORE_INDEX}


def test_same_seed_same_batches_other_seed_differs(shapes):
    def run(seed):
        return _batches(build_dataset(shapes, MaskEncoding("index", 3), training=True, batch_size=3,
                                      crop_size=(32, 32), seed=seed))
    first, again, other = run(7), run(7), run(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))


def test_epochs_differ_but_are_reproducible(shapes):
    ds = build_dataset(shapes, MaskEncoding("index", 3), training=True, batch_size=6, crop_size=(32, 32), seed=1)
    epoch1, epoch2 = _batches(ds)[0][1], _batches(ds)[0][1]
    assert not np.array_equal(epoch1, epoch2)


def test_eval_keeps_every_pixel_and_pads_with_ignore(shapes):
    ds = build_dataset(shapes, MaskEncoding("index", 3), training=False, batch_size=6, divisor=16)
    (image, mask), = _batches(ds)
    assert image.shape == (6, 48, 64, 3)
    assert (mask[:, 40:, :] == IGNORE_INDEX).all() and (mask[:, :, 56:] == IGNORE_INDEX).all()
    assert (mask[:, :40, :56] != IGNORE_INDEX).all()


def test_masks_are_resized_nearest_only(shapes):
    ds = build_dataset(shapes, MaskEncoding("index", 3), training=False, batch_size=6, resize=(23, 31))
    (_, mask), = _batches(ds)
    assert mask.shape == (6, 23, 31)
    assert set(np.unique(mask)) <= {0, 1, 2}


def test_one_hot_and_border_weights(tmp_path):
    root = write_shapes_dataset(tmp_path, count=2, size=(32, 32), num_classes=2, mask_kind="binary")
    frame = discover(root, val_fraction=0.0)
    ds = build_dataset(frame, MaskEncoding("binary", 2), training=False, batch_size=2, one_hot=True,
                       border_weights={"w0": 10.0, "sigma": 5.0})
    (image, mask, weights), = _batches(ds)
    assert mask.shape == (2, 32, 32, 2) and mask.dtype == np.float32
    np.testing.assert_array_equal(mask.sum(-1), 1.0)
    assert weights.shape == (2, 32, 32) and weights.min() > 0


def test_elastic_deformation_moves_image_and_mask_together():
    from data.augment import train_transform

    x = np.tile(np.arange(64, dtype=np.float32), (64, 1)) / 64
    image = np.stack([x, x.T, x], -1)
    mask = (np.arange(64)[None, :] // 16 + 0 * np.arange(64)[:, None]).astype(np.uint8)  # four vertical stripes
    options = dict(scale=None, rotate=0, hflip=0, brightness_contrast=0)
    plain = train_transform((64, 64), **options)(image=image, mask=mask)
    np.testing.assert_array_equal(plain["mask"], mask)
    moved = train_transform((64, 64), elastic=1.0, **options)(image=image, mask=mask)
    assert not np.array_equal(moved["mask"], mask)
    assert set(np.unique(moved["mask"])) <= {0, 1, 2, 3}  # nearest: no new labels
    stripe_of_column = np.clip(np.round(moved["image"][..., 0] * 64), 0, 63) // 16  # where each pixel came from
    assert (stripe_of_column == moved["mask"]).mean() > 0.95


@pytest.mark.parametrize("resize", [None, (50, 30)])
def test_eval_batch_pixels_match_the_padded_batches(tmp_path, resize):
    frames = [discover(write_shapes_dataset(tmp_path / f"{h}x{w}", count=n, size=(h, w)), val_fraction=0.0)
              for h, w, n in ((40, 56, 3), (70, 20, 2), (17, 100, 2))]
    frame = pd.concat(frames, ignore_index=True)
    sizes = [(40, 56)] * 3 + [(70, 20)] * 2 + [(17, 100)] * 2
    ds = build_dataset(frame, MaskEncoding("index", 3), training=False, batch_size=3, divisor=16, resize=resize)
    padded = [int(np.prod(image.shape[:3])) for image, _ in _batches(ds)]
    assert eval_batch_pixels(sizes, 3, divisor=16, resize=resize) == padded
    assert len(padded) == 3 and (resize is not None or len(set(padded)) == 3)



def test_a_repeated_training_stream_never_runs_out_and_has_full_batches(shapes):
    """Epochs shorter than a pass go on where the last stopped (Keras steps_per_epoch): the stream repeats,
    reshuffled each pass, batched across pass ends."""
    ds = build_dataset(shapes, MaskEncoding("index", 3), training=True, batch_size=4, crop_size=(32, 32), repeat=True)
    batches = [tuple(np.asarray(t) for t in batch) for batch in ds.take(7)]  # 28 samples: more than 4 passes
    assert [b[0].shape for b in batches] == [(4, 32, 32, 3)] * 7
