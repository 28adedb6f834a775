"""What every dataset layout shares: the DatasetSource it returns, file listing with hygiene, stem pairing
with automatic mask-name suffixes, and the train/val/test split rules."""
import dataclasses

import numpy as np
import pandas as pd

from data.images import IMAGE_EXTENSIONS  # noqa: F401 (re-exported: the layouts list images by it)
from data.multilabel import class_folders, pair_class_folders

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}
"""Folder names taken for each split (Roboflow exports use valid/, ADE20K training/ and validation/)."""
SYSTEM_FILES = {"thumbs.db", "desktop.ini", "icon\r"}
MASK_SUFFIXES = ("", "_mask", "_masks", "_seg", "_segmentation", "_label", "_labels", "_labelIds", "_gt",
                 "_annotation", "_L", "_m")
"""Mask-name suffixes tried, in order, when data.mask_suffix is unset (`_L`: CamVid, `_segmentation`: ISIC)."""
IMAGE_SUFFIXES = ("", "_sat", "_image", "_img", "_rgb", "_leftImg8bit")
"""Image-name suffixes tried with them (`<id>_sat.jpg` + `<id>_mask.png`: DeepGlobe)."""
FRAME_COLUMNS = ["image", "mask", "instances", "split"]


class DatasetError(ValueError):
    """A dataset problem; `problems` holds one line per file, each naming the path."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclasses.dataclass
class LayoutOptions:
    """The data.* keys that decide how a layout reads a folder (None: found automatically)."""

    images_dir: str | None = None
    masks_dir: str | None = None
    instances_dir: str = "instances"
    mask_suffix: str | None = None
    image_suffix: str | None = None
    reduce_zero_label: bool | None = None
    train_list: str | None = None
    val_list: str | None = None
    test_list: str | None = None
    import_dir: str | None = None
    val_fraction: float = 0.2
    seed: int = 0


@dataclasses.dataclass
class DatasetSource:
    """A dataset as a layout found it, with the facts its format fixes.

    Attributes:
        frame: DataFrame with columns image, mask, instances, split (train, val or test).
        layout: registry name of the layout.
        reason: why this layout, e.g. "JPEGImages/ + SegmentationClass/".
        split_source: where the splits come from, e.g. "train/ + val/ folders".
        class_names: class names in index order, or None.
        palette: DataFrame index,name,r,g,b (as `data.masks.read_palette` returns), or None.
        void: mask value of void pixels after `label_map`, or None.
        label_map: raw mask value -> class index (255 = void), or None when mask values are class indexes.
        notes: what was skipped on the way (hidden files, images without masks), one line each.
        split_notes: how split conflicts were resolved (ids in two split lists), one line each.
        class_source: where `class_names` come from when a file gave them ("4 classes from labelmap.txt
            (CVAT)"): they fix the class count. None: the count is what the masks use.
        standard: (title, class count) of a benchmark's class list that `class_names` (where given) name, e.g.
            ("PASCAL VOC", 21): used when the masks fit it exactly, else the masks' count is used.
    """

    frame: pd.DataFrame
    layout: str
    reason: str
    split_source: str
    class_names: list | None = None
    palette: pd.DataFrame | None = None
    void: int | None = None
    label_map: dict | None = None
    notes: list = dataclasses.field(default_factory=list)
    split_notes: list = dataclasses.field(default_factory=list)
    class_source: str | None = None
    standard: tuple | None = None


def label_lookup(label_map):
    """256-entry uint8 table applying `label_map` (values it leaves out become 255, void)."""
    table = np.full(256, 255, np.uint8)
    for raw, index in label_map.items():
        table[int(raw)] = index
    return table


def palette_frame(names, colours):
    """Palette DataFrame (index, name, r, g, b) of classes 0..len(names)-1."""
    colours = np.asarray(colours, dtype=int)[: len(names)]
    return pd.DataFrame({"index": range(len(names)), "name": list(names),
                         "r": colours[:, 0], "g": colours[:, 1], "b": colours[:, 2]})


def is_hidden(path):
    """macOS `._*` and `.DS_Store`, Windows `Thumbs.db`, and any name starting with a dot."""
    return path.name.startswith(".") or path.name.lower() in SYSTEM_FILES


def child_dir(folder, names):
    """The first subfolder of `folder` whose name is one of `names` (case-insensitive), or None."""
    if not folder.is_dir():
        return None
    children = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_dir() and not is_hidden(p)}
    for name in names:
        if name.lower() in children:
            return children[name.lower()]
    return None


def split_dirs(folder):
    """{split: subfolder} of the split folders (train/, val/, valid/, test/, training/, ...) in `folder`."""
    found = {}
    for split, names in SPLIT_ALIASES.items():
        path = child_dir(folder, names)
        if path is not None:
            found[split] = path
    return found


def image_files(folder, problems, recursive=False, skipped=None, shared=None):
    """{stem: path} of the image files in `folder`; hidden/system files skipped (counted in `skipped`),
    two files with one stem reported in `problems` (and their stem added to set `shared`)."""
    found, files = {}, {}
    candidates = sorted(folder.rglob("*") if recursive else folder.iterdir())
    for path in candidates:
        if not path.is_file():
            continue
        if is_hidden(path) or any(part.startswith(".") for part in path.relative_to(folder).parts[:-1]):
            if skipped is not None:
                skipped.append(path)
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        files.setdefault(path.stem, []).append(path)
    for stem, paths in files.items():
        if len(paths) > 1:
            if shared is not None:
                shared.add(stem)
            problems.append(f"{paths[0]}: {len(paths)} files share the name {stem!r} "
                            f"({', '.join(p.name for p in paths)}); keep one of them or rename the others")
        else:
            found[stem] = paths[0]
    return found


def _best_suffixes(image_stems, mask_stems, image_suffix=None, mask_suffix=None):
    """(image suffix, mask suffix, {key: (image stem, mask stem)}) matching the most images to masks."""
    best = ("", "", {})
    for img_sfx in (IMAGE_SUFFIXES if image_suffix is None else (image_suffix,)):
        images = {s.removesuffix(img_sfx) if img_sfx else s: s for s in image_stems if s.endswith(img_sfx)}
        for mask_sfx in (MASK_SUFFIXES if mask_suffix is None else (mask_suffix,)):
            masks = {s.removesuffix(mask_sfx) if mask_sfx else s: s for s in mask_stems if s.endswith(mask_sfx)}
            pairs = {key: (images[key], masks[key]) for key in images.keys() & masks.keys()}
            if len(pairs) > len(best[2]):
                best = (img_sfx, mask_sfx, pairs)
            if len(pairs) == len(image_stems):
                return best
    return best


def _suffix_text(image_suffix, mask_suffix):
    parts = ([f"image suffix {image_suffix}"] if image_suffix else []) + (
        [f"mask suffix {mask_suffix}"] if mask_suffix else [])
    return ", ".join(parts)


def pair_folders(image_dir, mask_dir, options, problems, notes, instance_dir=None, extra_images="problem"):
    """Rows (image, mask, instances) matching the images of `image_dir` to the masks of `mask_dir`.

    Mask names may carry a suffix (`<stem>_mask.png`, ...; data.mask_suffix fixes it) and image names one
    too (data.image_suffix). `image_dir == mask_dir` pairs images and masks kept in one folder by the mask
    suffix. Images without a mask are problems naming the fix, or with `extra_images="note"` one note (VOC
    JPEGImages/ holds many images without masks). Returns (rows, suffix description).
    """
    same_folder = image_dir == mask_dir
    if not same_folder and class_folders(mask_dir):
        return pair_class_folders(image_dir, mask_dir, problems), "one mask per class folder"
    skipped, shared = [], set()
    images = image_files(image_dir, problems, skipped=skipped, shared=shared)
    masks = images if same_folder else image_files(mask_dir, problems, skipped=skipped, shared=shared)
    if skipped:
        notes.append(f"{len(skipped)} hidden/system file(s) skipped (e.g. {skipped[0]})")
    if same_folder:
        image_sfx, mask_sfx, pairs = "", "", {}
        for sfx in (MASK_SUFFIXES[1:] if options.mask_suffix is None else (options.mask_suffix,)):
            mask_stems = {s for s in images if s.endswith(sfx)}
            found = _best_suffixes(set(images) - mask_stems, mask_stems, options.image_suffix, sfx)
            if len(found[2]) > len(pairs):
                image_sfx, mask_sfx, pairs = found
        mask_stems = {m for _, m in pairs.values()} | {s for s in images if mask_sfx and s.endswith(mask_sfx)}
        image_stems = set(images) - mask_stems
    else:
        image_sfx, mask_sfx, pairs = _best_suffixes(set(images), set(masks), options.image_suffix,
                                                    options.mask_suffix)
        mask_stems, image_stems = set(masks), set(images)
    if not image_stems:
        problems.append(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    paired_images = {i for i, _ in pairs.values()}
    paired_masks = {m for _, m in pairs.values()}
    missing = sorted(stem for stem in image_stems - paired_images
                     if (stem.removesuffix(image_sfx) if image_sfx else stem) + mask_sfx not in shared)
    if missing and extra_images == "note":
        notes.append(f"{len(missing)} image(s) in {image_dir} without a mask ignored")
    elif missing:
        hint = _mask_hint(images, masks, missing, mask_sfx)
        problems += [f"{images[stem]}: image has no mask in {mask_dir}; "
                     + (hint or f"looked for {mask_dir.name}/{stem.removesuffix(image_sfx)}{mask_sfx}.png; add the "
                        f"mask, remove the image, or set data.mask_suffix / data.masks_dir to how the masks are named")
                     for stem in missing]
    for stem in sorted(mask_stems - paired_masks):
        if (stem.removesuffix(mask_sfx) if mask_sfx else stem) + image_sfx in shared:
            continue  # its image is one of two files sharing a name, reported once above
        problems.append(f"{masks[stem]}: mask has no image in {image_dir}; remove it or add its image "
                        f"(looked for {stem.removesuffix(mask_sfx) if mask_sfx else stem}{image_sfx}.*)")
    instances = image_files(instance_dir, problems) if instance_dir and instance_dir.is_dir() else {}
    rows = []
    for key in sorted(pairs):
        image_stem, mask_stem = pairs[key]
        instance = instances.get(key) or instances.get(image_stem)
        rows.append({"image": str(images[image_stem]), "mask": str(masks[mask_stem]),
                     "instances": str(instance) if instance else None})
    return rows, _suffix_text(image_sfx, mask_sfx)


def _mask_hint(images, masks, missing, mask_sfx):
    """A mask suffix that would match the images without masks, as advice, or None."""
    _, other_sfx, pairs = _best_suffixes(set(missing), set(masks) - {m for m in masks if m in images})
    if pairs and other_sfx != mask_sfx:
        return f"masks named <stem>{other_sfx}.* exist: set data.mask_suffix={other_sfx or repr('')}"
    return None


def make_frame(rows):
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    frame["split"] = frame["split"].astype(object)
    return frame


def finish_splits(frame, val_fraction, seed):
    """Give every row a split; returns (frame, how the split was made or "").

    Rows without a split get a seeded train/val split of `val_fraction`. A dataset whose splits name no
    `val` gets a seeded validation split carved from `train` (never from `test`, which is never trained on
    nor used to choose the model).
    """
    frame = frame.copy()
    unsplit = frame["split"].isna()
    percent = f"{val_fraction:.0%}"
    if unsplit.all():
        _seeded(frame, frame.index, val_fraction, seed)
        return frame, f"no split given: val {percent} seeded {seed}" if val_fraction > 0 else "no split given"
    if unsplit.any():
        _seeded(frame, frame.index[unsplit], val_fraction, seed)
        return frame, f"{int(unsplit.sum())} rows without a split: val {percent} of them seeded {seed}"
    if not (frame["split"] == "val").any() and (frame["split"] == "train").any():
        if val_fraction <= 0:
            return frame, "no validation split (data.val_fraction is 0)"
        _seeded(frame, frame.index[frame["split"] == "train"], val_fraction, seed)
        return frame, f"val carved from train: {percent} seeded {seed}"
    return frame, ""


def _seeded(frame, rows, val_fraction, seed):
    """Assign train/val to `rows`, reproducibly under `seed`."""
    if len(rows) == 0:
        return
    order = np.random.default_rng(seed).permutation(len(rows))
    n_val = int(round(val_fraction * len(rows))) if len(rows) > 1 else 0
    if val_fraction > 0 and len(rows) > 1:
        n_val = max(n_val, 1)
    split = np.full(len(rows), "train", dtype=object)
    split[order[:n_val]] = "val"
    frame.loc[rows, "split"] = split
