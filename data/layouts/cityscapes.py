"""Cityscapes layout: `leftImg8bit/<split>/<city>/*_leftImg8bit.png` + `gtFine/<split>/<city>/*_gtFine_labelIds.png`
(label ids mapped to the 19 train ids, others void) or `*_gtFine_labelTrainIds.png` where they were made."""
from data.layouts.base import SPLITS, DatasetSource, child_dir, image_files, make_frame, palette_frame

CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")
CITYSCAPES_COLOURS = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                      (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                      (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                      (0, 80, 100), (0, 0, 230), (119, 11, 32))
TRAIN_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
"""Label id of each train id 0..18 (cityscapesScripts labels.py); the other ids 0..33 are void."""
LABEL_TO_TRAIN = {label_id: TRAIN_LABEL_IDS.index(label_id) if label_id in TRAIN_LABEL_IDS else 255
                  for label_id in range(34)}
IMAGE_SUFFIX, LABEL_SUFFIX, TRAIN_ID_SUFFIX = "_leftImg8bit", "_gtFine_labelIds", "_gtFine_labelTrainIds"


def detect(root):
    if child_dir(root, ("leftImg8bit",)) and child_dir(root, ("gtFine",)):
        return "leftImg8bit/ + gtFine/"
    return None


def load(root, options, problems):
    image_root, label_root = root / "leftImg8bit", root / "gtFine"
    train_ids = any(label_root.rglob(f"*{TRAIN_ID_SUFFIX}.png"))
    suffix = TRAIN_ID_SUFFIX if train_ids else LABEL_SUFFIX
    rows, notes = [], []
    for split in SPLITS:
        if not (image_root / split).is_dir():
            continue
        images = image_files(image_root / split, problems, recursive=True)
        labels = image_files(label_root / split, problems, recursive=True) if (label_root / split).is_dir() else {}
        for stem, image in sorted(images.items()):
            key = stem.removesuffix(IMAGE_SUFFIX)
            label = labels.get(key + suffix)
            if label is None:
                city = image.parent.name
                problems.append(f"{image}: image has no mask gtFine/{split}/{city}/{key}{suffix}.png; "
                                f"add it or remove the image")
                continue
            rows.append({"image": str(image), "mask": str(label), "instances": None, "split": split})
    splits = [s for s in SPLITS if (image_root / s).is_dir()]
    if train_ids:
        notes.append(f"masks: {suffix}.png (train ids 0..18, void 255)")
    return DatasetSource(frame=make_frame(rows), layout="cityscapes",
                         reason=f"leftImg8bit/ + gtFine/ *{suffix}.png", notes=notes,
                         split_source=" + ".join(f"{s}/" for s in splits) + " folders",
                         class_names=list(CITYSCAPES_CLASSES), class_source="Cityscapes' 19 train classes",
                         palette=palette_frame(CITYSCAPES_CLASSES, CITYSCAPES_COLOURS), void=255,
                         label_map=None if train_ids else dict(LABEL_TO_TRAIN))
