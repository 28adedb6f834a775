"""Input pipeline throughput next to U-Net training throughput, measured in one run.

    python benchmarks/pipeline.py [--data ../shared/datasets/camvid] [--crop 352 480] [--batch 4]

Reads CamVid (SegNet split) at its full 360x480 with the default training augmentation, and times
(1) the tf.data pipeline alone and (2) U-Net training steps on batches of the same shape. The pipeline must
deliver at least 3x what training consumes. Without CamVid it uses a generated dataset of the same size and
says so. Prints a table and writes benchmarks/results/pipeline.json.
"""
import argparse
import json
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from app.config.schema import Config  # noqa: E402
from data.discovery import discover  # noqa: E402
from data.masks import MaskEncoding  # noqa: E402
from data.pipeline import build_dataset  # noqa: E402
from data.synthetic import write_shapes_dataset  # noqa: E402

CAMVID = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "camvid"
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def pipeline_rate(frame, encoding, crop, batch, epochs):
    """Images per second of the training pipeline, median over epochs after a warm-up epoch."""
    dataset = build_dataset(frame, encoding, training=True, batch_size=batch, crop_size=crop,
                            augment_options=Config().augment.options(), seed=0)
    rates = []
    for epoch in range(epochs + 1):
        start, count = time.perf_counter(), 0
        for images, _ in dataset:
            count += int(images.shape[0])
        if epoch:
            rates.append(count / (time.perf_counter() - start))
    return float(np.median(rates))


def training_rate(crop, batch, num_classes, steps):
    """Images per second of U-Net train steps (default model options) on fixed batches of the same shape."""
    import keras

    from models.losses import get_loss
    from models.registry import get_model

    options = Config().model.builder_options()
    model = get_model("unet", input_shape=(*crop, 3), num_classes=num_classes, **options)
    model.compile(optimizer="adamw", loss=get_loss("dice_ce", num_classes=num_classes, ignore_class=255))
    images = np.random.rand(batch, *crop, 3).astype("float32")
    masks = np.random.randint(0, num_classes, (batch, *crop)).astype("int32")
    for _ in range(2):
        model.train_on_batch(images, masks)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, masks)
    keras.backend.clear_session()
    return batch * steps / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(CAMVID))
    parser.add_argument("--crop", type=int, nargs=2, default=[352, 480])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2, help="timed pipeline epochs after one warm-up")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--limit", type=int, default=None, help="use only this many training images")
    args = parser.parse_args(argv)
    data = pathlib.Path(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        if data.is_dir():
            source = str(data)
            frame = discover(data, layout="segnet")
            encoding = MaskEncoding("index", num_classes=11, void=11)
        else:
            print(f"{data} is absent: timing a generated 360x480 dataset instead")
            source = "generated 360x480 shapes"
            frame = discover(write_shapes_dataset(tmp, count=48, size=(360, 480), num_classes=11), val_fraction=0)
            encoding = MaskEncoding("index", num_classes=11)
        frame = frame[frame["split"] == "train"].head(args.limit)
        pipe = pipeline_rate(frame, encoding, tuple(args.crop), args.batch, args.epochs)
    train = training_rate(tuple(args.crop), args.batch, encoding.num_classes, args.steps)
    result = {"data": source, "images": len(frame), "crop": args.crop, "batch": args.batch,
              "pipeline_images_per_s": round(pipe, 2), "train_images_per_s": round(train, 2),
              "ratio": round(pipe / train, 2), "target_ratio": 3.0}
    print(f"{'data':<28}{'pipeline img/s':>16}{'training img/s':>16}{'ratio':>8}")
    print(f"{source[-27:]:<28}{pipe:>16.1f}{train:>16.2f}{pipe / train:>8.1f}x  (target >= 3x)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2))
    return 0 if pipe >= 3 * train else 1


if __name__ == "__main__":
    sys.exit(main())
