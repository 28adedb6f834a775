"""Find image/mask pairs on disk: `discover` lists a dataset's samples through the layout registry
(`data.layouts`: paired, segnet, csv, voc, cityscapes, ade, coco, labelme)."""
from data.layouts import LAYOUTS as _REGISTRY
from data.layouts import LayoutOptions, load_dataset
from data.layouts.base import IMAGE_EXTENSIONS, SPLITS, DatasetError

LAYOUTS = ("auto", *_REGISTRY)

__all__ = ["DatasetError", "IMAGE_EXTENSIONS", "LAYOUTS", "SPLITS", "discover"]


def discover(path, layout="auto", images_dir=None, masks_dir=None, instances_dir="instances",
             val_fraction=0.2, seed=0, **options):
    """List a dataset's samples as a DataFrame with columns image, mask, instances, split.

    `layout` is "auto" or a name of `data.layouts.LAYOUTS`; `images_dir`/`masks_dir` None means the usual
    folder names are searched; further keyword arguments are `data.layouts.LayoutOptions` fields. Rows without
    a split get a seeded train/val split of `val_fraction`; a dataset with train/ (and test/) but no val/ gets
    its validation split carved from train. See `data.layouts.load_dataset` for the facts a layout also gives.

    Raises:
        DatasetError: listing every missing folder, unmatched file or bad CSV row.
    """
    settings = LayoutOptions(images_dir=images_dir, masks_dir=masks_dir, instances_dir=instances_dir,
                             val_fraction=val_fraction, seed=seed, **options)
    return load_dataset(path, layout, settings).frame
