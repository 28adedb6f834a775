"""Pascal VOC layout: `JPEGImages/` + `SegmentationClass/` (or `SegmentationClassRaw/`, `SegmentationClassAug/`),
splits from `ImageSets/Segmentation/{train,val,trainval,test}.txt`; the VOC classes, colour map and void."""
import pathlib

from data.colormaps import voc_colormap  # noqa: F401 (re-exported)
from data.layouts.base import (IMAGE_EXTENSIONS, SPLIT_ALIASES, DatasetSource, child_dir, image_files, is_hidden,
                               make_frame, pair_folders)
from data.layouts.paired import IMAGE_DIR_NAMES

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
VOC_VOID = 255
"""Index of void pixels (object borders, difficult regions); coloured (224, 224, 192) in RGB masks."""
MASK_DIRS = ("SegmentationClass", "SegmentationClassPNG", "SegmentationClassRaw", "SegmentationClassAug")
"""Mask folders, first holding images wins (labelme2voc's SegmentationClass/ holds .npy, its PNGs are in
SegmentationClassPNG/)."""
LIST_DIR = pathlib.Path("ImageSets") / "Segmentation"


def voc_root(root):
    """The folder holding JPEGImages/ (root itself, or VOC2012/ inside a VOCdevkit/), or None."""
    def voc_children(folder):
        return sorted((p for p in folder.iterdir() if p.is_dir() and p.name.upper().startswith("VOC")),
                      reverse=True)

    for folder in (root, *voc_children(root), *(c for p in voc_children(root) for c in voc_children(p))):
        if child_dir(folder, ("JPEGImages",)) and mask_folder(folder):
            return folder
    return None


def mask_folder(folder):
    """The first of MASK_DIRS in `folder` that holds image files, else the first that exists, or None."""
    found = [path for path in (child_dir(folder, (name,)) for name in MASK_DIRS) if path is not None]
    with_images = [path for path in found if image_files(path, [])]
    return (with_images or found or [None])[0]


def detect(root):
    if not root.is_dir():
        return None
    found = voc_root(root)
    if found is None and _annotations_only(root):
        return f"{mask_folder(root).name}/ + {LIST_DIR.as_posix()}/ without JPEGImages/"
    if found is None:
        return None
    prefix = "" if found == root else f"{found.relative_to(root)}/"
    return f"{prefix}JPEGImages/ + {prefix}{mask_folder(found).name}/"


def _list_path(root, name, configured):
    """The split list: the configured file (relative to the VOC folder, its ImageSets/Segmentation, or
    absolute) or ImageSets/Segmentation/<name>.txt; None where it does not exist."""
    if configured:
        for path in (pathlib.Path(configured), root / configured, root / LIST_DIR / configured):
            if path.is_file():
                return path
        return pathlib.Path(configured)
    path = root / LIST_DIR / f"{name}.txt"
    return path if path.is_file() else None


def read_ids(path):
    """Ids of a split list: one per line, or lines like `/JPEGImages/x.jpg /SegmentationClassAug/x.png`."""
    ids = []
    for line in path.read_text(errors="replace").splitlines():
        token = line.strip().split()[0] if line.strip() else ""
        if token and not token.startswith("#"):
            ids.append(pathlib.PurePosixPath(token).stem if "/" in token or "." in token else token)
    return list(dict.fromkeys(ids))


def _annotations_only(folder):
    """True for a VOC-style export without its images (CVAT "Segmentation mask 1.1" exported without "Save
    images"): a mask folder and ImageSets/Segmentation/ or labelmap.txt, but no JPEGImages/ (nor images/, ...)."""
    return (mask_folder(folder) is not None and child_dir(folder, IMAGE_DIR_NAMES) is None
            and ((folder / LIST_DIR).is_dir() or (folder / "labelmap.txt").is_file()))


def load(root, options, problems):
    base = voc_root(root) or root
    image_dir = base / "JPEGImages"
    if not image_dir.is_dir():
        problems.append(f"{base}: masks ({mask_folder(base).name}/) but no JPEGImages/ folder: an export without "
                        f"its images (CVAT: tick 'Save images' when exporting); put the images in JPEGImages/, named "
                        f"as the masks")
        return None
    mask_dir = base / options.masks_dir if options.masks_dir else mask_folder(base)
    if mask_dir is None or not mask_dir.is_dir():
        problems.append(f"{mask_dir or base}: no mask folder; VOC masks go in SegmentationClass/ "
                        f"(or set data.masks_dir)")
        return None
    facts = dict(class_names=list(VOC_CLASSES), void=VOC_VOID, standard=("PASCAL VOC", len(VOC_CLASSES)))
    prefix = "" if base == root else f"{base.relative_to(root).as_posix()}/"
    reason = f"{prefix}JPEGImages/ + {prefix}{mask_dir.name}/"
    notes, split_notes = [], []
    lists = {name: _list_path(base, name, getattr(options, f"{name}_list", None))
             for name in ("train", "val", "trainval", "test")}
    for name in ("train", "val", "test"):
        configured = getattr(options, f"{name}_list")
        if configured and not lists[name].is_file():
            problems.append(f"{configured}: split list not found; set data.{name}_list to a file of image ids "
                            f"(relative to {base} or {base / LIST_DIR})")
    if problems:
        return None
    ids = {name: read_ids(path) for name, path in lists.items() if path is not None}
    subsets = other_lists(base) if not ids else {}
    if subsets:
        return _subset_source(base, image_dir, mask_dir, subsets, reason, notes, problems, facts)
    if not ids:
        rows, suffixes = pair_folders(image_dir, mask_dir, options, problems, notes, extra_images="note")
        return DatasetSource(frame=make_frame([dict(r, split=None) for r in rows]), layout="voc", reason=reason,
                             split_source="", notes=notes, **facts)
    if "train" not in ids and "trainval" in ids:
        ids["train"] = ids.pop("trainval")
    ids.pop("trainval", None)
    both = set(ids.get("train", [])) & set(ids.get("val", []))
    if both:
        ids["train"] = [i for i in ids["train"] if i not in both]
        split_notes.append(f"{len(both)} ids in both lists used for validation only")
        shown = ", ".join(sorted(both)[:5]) + (", ..." if len(both) > 5 else "")
        notes.append(f"ids in both the train and the val list, used for validation only: {shown}")
    skipped = []
    images = image_files(image_dir, problems, skipped=skipped)
    masks = image_files(mask_dir, problems, skipped=skipped)
    if skipped:
        notes.append(f"{len(skipped)} hidden/system file(s) skipped (e.g. {skipped[0]})")
    rows, no_mask = [], []
    for split in ("train", "val", "test"):
        for image_id in ids.get(split, []):
            if image_id not in images:
                problems.append(f"{lists[split] or lists['trainval']}: id {image_id} has no image "
                                f"{image_dir / image_id}.jpg; remove the line or add the image")
            elif image_id not in masks and split == "test":
                no_mask.append(image_id)
            elif image_id not in masks:
                problems.append(f"{images[image_id]}: image has no mask in {mask_dir} (listed in "
                                f"{(lists[split] or lists['trainval']).name}); add {mask_dir.name}/{image_id}.png "
                                f"or remove the id from the list")
            else:
                rows.append({"image": str(images[image_id]), "mask": str(masks[image_id]), "instances": None,
                             "split": split})
    if no_mask:
        split_notes.append(f"{len(no_mask)} test ids without masks left out")
    names = [(lists[s] or lists["trainval"]).name for s in ("train", "val", "test") if s in ids]
    split_source = f"{LIST_DIR.as_posix()} {' + '.join(dict.fromkeys(names))}"
    return DatasetSource(frame=make_frame(rows), layout="voc", reason=reason, split_source=split_source,
                         notes=notes, split_notes=split_notes, **facts)


def other_lists(base):
    """{list path: split or None} of the subset lists other than train/val/trainval/test, as CVAT writes them
    (`default.txt`, or one list per task subset: `Train.txt`, `validation.txt`, ...)."""
    folder = base / LIST_DIR
    if not folder.is_dir():
        return {}
    splits = {alias: split for split, aliases in SPLIT_ALIASES.items() for alias in aliases}
    return {path: splits.get(path.stem.lower()) for path in sorted(folder.glob("*.txt"))
            if not path.name.startswith(".")}


def _files_by_id(folder, skipped):
    """{id: path} of the image files under `folder`, the id being the path relative to it without the suffix
    (`img1`, or `folder/img1` as CVAT names images uploaded in folders)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or is_hidden(path):
            skipped.append(path)
            continue
        found.setdefault(relative.with_suffix("").as_posix(), path)
    return found


def _subset_ids(path):
    """Ids of a CVAT subset list as written: one per line, `folder/name` kept whole."""
    lines = (line.strip().split()[0] for line in path.read_text(errors="replace").splitlines() if line.strip())
    return list(dict.fromkeys(token.lstrip("/") for token in lines if not token.startswith("#")))


def _subset_source(base, image_dir, mask_dir, subsets, reason, notes, problems, facts):
    """Rows of the ids the subset lists name (split None for `default.txt` and other names)."""
    skipped = []
    images, masks = _files_by_id(image_dir, skipped), _files_by_id(mask_dir, skipped)
    if skipped:
        notes.append(f"{len(skipped)} hidden/system file(s) skipped (e.g. {skipped[0]})")
    rows, seen, no_mask = [], set(), []
    for path, split in subsets.items():
        for image_id in _subset_ids(path):
            if image_id in seen:
                continue
            seen.add(image_id)
            if image_id not in images:
                problems.append(f"{path}: id {image_id} has no image {image_dir / image_id}.jpg; remove the line or "
                                f"add the image")
            elif image_id not in masks:
                no_mask.append(image_id)  # a frame nobody annotated: CVAT writes no mask for it
            else:
                rows.append({"image": str(images[image_id]), "mask": str(masks[image_id]), "instances": None,
                             "split": split})
    unlisted = len(set(images) - seen)
    if unlisted:
        notes.append(f"{unlisted} image(s) in {image_dir} in no subset list ignored")
    if no_mask:
        notes.append(f"{len(no_mask)} listed image(s) without a mask in {mask_dir} left out (not annotated?), e.g. "
                     f"{', '.join(no_mask[:3])}")
    split_source = f"{LIST_DIR.as_posix()} {' + '.join(p.name for p in subsets)}"
    split_notes = [f"{len(no_mask)} listed ids without masks left out"] if no_mask else []
    return DatasetSource(frame=make_frame(rows), layout="voc", reason=reason, split_source=split_source,
                         notes=notes, split_notes=split_notes, **facts)
