"""The plain-script arm of benchmarks/autoplan.py: what a user writes in 60 lines without a planner.

    python -m benchmarks.plain_unet --config data-only.yaml --time-budget 5m --runs-dir runs/plain

Whole images resized to 256x256 (masks nearest), a U-Net (depth 4, 32 filters), Dice + cross-entropy, AdamW with
a cosine decay over the epochs that fit the budget (counted after the first epoch), random flips, batch 8,
the model of the last epoch kept. Only the reading of files is segkit's (layouts, mask decoding), so that the
arms differ in their training choices alone. Writes a run folder (config.yaml with data.resize, model.keras)
that `app.evaluate` and the benchmark score at the images' own resolution, like the other arms.
"""
import argparse
import math
import time

SIZE, BATCH, PEAK = (256, 256), 8, 1e-3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plain_unet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="data-only config (where the data is, how to read it)")
    parser.add_argument("--time-budget", required=True)
    parser.add_argument("--runs-dir", default="runs/plain")
    return parser.parse_args(argv)


def main(argv=None):
    started = time.monotonic()
    args = parse_args(argv)
    import cv2
    import keras
    import numpy as np
    import tensorflow as tf

    from app.config.durations import parse_duration
    from app.config.loading import dump_config, load_config
    from app.dataset.scanning import scan_dataset
    from app.training.runs import new_run_dir
    from data.images import read_image
    from data.masks import IGNORE_INDEX
    from models.losses import get_loss
    from models.registry import get_model

    budget = parse_duration(args.time_budget, "--time-budget")
    config = load_config(args.config, [{"data": {"resize": list(SIZE), "image_size": list(SIZE),
                                                 "normalization": "unit"},
                                        "model": {"name": "unet", "depth": 4, "base_filters": 32}}])
    scanned = scan_dataset(config)
    frame, encoding = scanned.source.frame, scanned.encoding
    config.data.channels = scanned.channels

    def load(rows):
        images = np.stack([cv2.resize(read_image(p, scanned.channels), SIZE[::-1], interpolation=cv2.INTER_AREA)
                           .reshape(*SIZE, -1) for p in rows["image"]])
        masks = np.stack([cv2.resize(encoding.read(p), SIZE[::-1], interpolation=cv2.INTER_NEAREST)
                          for p in rows["mask"]])
        return images.astype("float32"), masks.astype("int32")

    x, y = load(frame[frame["split"] == "train"])

    def flip(image, mask):
        both = tf.concat([image, tf.cast(mask[..., None], tf.float32)], -1)
        both = tf.image.random_flip_up_down(tf.image.random_flip_left_right(both))
        return both[..., :-1], tf.cast(both[..., -1], tf.int32)

    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).map(flip).batch(BATCH).prefetch(2)
    model = get_model("unet", (None, None, scanned.channels), encoding.num_classes, depth=4, base_filters=32)
    optimizer = keras.optimizers.AdamW(PEAK, weight_decay=1e-4)
    model.compile(optimizer, get_loss("dice_ce", num_classes=encoding.num_classes, ignore_class=IGNORE_INDEX))
    epochs = {"total": 1}

    def cosine(epoch, _):
        return PEAK * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(epoch / max(epochs["total"], 1), 1))))

    def fit_epochs(epoch, logs=None):
        if epoch == 0:  # the epochs the budget holds at the first epoch's pace
            left = 0.93 * budget - (time.monotonic() - started)
            epochs["total"] = 1 + max(0, int(left / epoch_seconds[0]))
        if epoch + 1 >= epochs["total"]:
            model.stop_training = True

    epoch_seconds, mark = [], {}
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda *_: mark.update(t=time.monotonic()),
                                           on_epoch_end=lambda *_: epoch_seconds.append(time.monotonic() - mark["t"]))
    model.fit(data, epochs=10_000, verbose=2, callbacks=[timer, keras.callbacks.LearningRateScheduler(cosine),
                                                         keras.callbacks.LambdaCallback(on_epoch_end=fit_epochs)])
    run = new_run_dir(args.runs_dir, "plain-unet")
    dump_config(config, run / "config.yaml")
    model.save(run / "model.keras")
    print(f"plain script: {len(epoch_seconds)} epochs, {time.monotonic() - started:.0f} s of {budget:.0f} s; "
          f"run folder: {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
