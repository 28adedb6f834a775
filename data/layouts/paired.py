"""Paired layout: an image folder and a mask folder matched by file stem, at the top level or inside
train/ val/ test/ folders (or images/train/ + masks/train/), or images and `<stem>_mask` files in one folder."""
from data.layouts.base import (DatasetSource, SPLIT_ALIASES, child_dir, image_files, make_frame, pair_folders,
                               split_dirs)
from data.layouts.palettes import root_palette

IMAGE_DIR_NAMES = ("images", "image", "imgs", "img", "JPEGImages", "inputs", "input", "rgb")
MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "annotations", "annotation", "SegmentationClass",
                  "SegmentationClassRaw", "gt", "groundtruth", "ground_truth", "gts", "segmentations",
                  "segmentation", "seg", "targets")
"""Folder names searched, in order, when data.images_dir / data.masks_dir are unset."""


def detect(root):
    if child_dir(root, IMAGE_DIR_NAMES) and child_dir(root, MASK_DIR_NAMES):
        return "images and masks folders"
    if any(child_dir(folder, IMAGE_DIR_NAMES) for folder in split_dirs(root).values()):
        return "split folders with images and masks folders"
    return None


def _folder(base, name, candidates, key, problems):
    """The configured folder `name` (must exist) or the first of `candidates` found in `base`."""
    if name is None:
        return child_dir(base, candidates)
    path = base / name
    if not path.is_dir():
        found = ", ".join(f"{p.name}/" for p in sorted(base.iterdir()) if p.is_dir()) or "none"
        problems.append(f"{path}: folder not found; set data.{key} to the folder that holds them "
                        f"(folders here: {found})")
    return path if path.is_dir() else None


def pair_base(base, options, problems, notes):
    """Rows (with split, None where the folders do not say) and a description of what was paired."""
    image_dir = _folder(base, options.images_dir, IMAGE_DIR_NAMES, "images_dir", problems)
    mask_dir = _folder(base, options.masks_dir, MASK_DIR_NAMES, "masks_dir", problems)
    if problems:
        return [], ""
    instance_dir = base / options.instances_dir if options.instances_dir else None
    if image_dir is None and mask_dir is None and image_files(base, []):
        rows, suffixes = pair_folders(base, base, options, problems, notes)
        if not rows and not problems:
            problems.append(f"{base}: images but no masks; put masks in a masks/ folder (or labels/, gt/, ...) "
                            f"or name them <stem>_mask.png beside the images")
        return [dict(r, split=None) for r in rows], f"images and masks in one folder ({suffixes or 'no suffix'})"
    if image_dir is None or mask_dir is None:
        missing, names, key = ("image", IMAGE_DIR_NAMES, "images_dir") if image_dir is None else (
            "mask", MASK_DIR_NAMES, "masks_dir")
        found = ", ".join(f"{p.name}/" for p in sorted(base.iterdir()) if p.is_dir()) or "none"
        problems.append(f"{base}: no {missing} folder ({', '.join(n + '/' for n in names[:5])}...); name it so or "
                        f"set data.{key} (folders here: {found})")
        return [], ""
    image_splits, mask_splits = split_dirs(image_dir), split_dirs(mask_dir)
    if image_splits and not image_files(image_dir, []):
        rows = []
        for split, folder in image_splits.items():
            target = mask_splits.get(split) or child_dir(mask_dir, SPLIT_ALIASES[split])
            if target is None:
                problems.append(f"{mask_dir}: no {folder.name}/ folder for the images in {folder}; add their masks "
                                f"there")
                continue
            found, suffixes = pair_folders(folder, target, options, problems, notes,
                                           instance_dir / folder.name if instance_dir else None)
            rows += [dict(r, split=split) for r in found]
        names = "/, ".join(f.name for f in image_splits.values())
        return rows, f"{image_dir.name}/{{{names}/}} + {mask_dir.name}/" + (f" ({suffixes})" if suffixes else "")
    rows, suffixes = pair_folders(image_dir, mask_dir, options, problems, notes, instance_dir)
    return [dict(r, split=None) for r in rows], f"{image_dir.name}/ + {mask_dir.name}/" + (
        f" ({suffixes})" if suffixes else "")


def load(root, options, problems):
    notes, rows = [], []
    splits = split_dirs(root)
    root_has_data = child_dir(root, IMAGE_DIR_NAMES) is not None or (
        options.images_dir is not None and (root / options.images_dir).is_dir())
    if splits and not root_has_data:
        described = ""
        for split, folder in splits.items():
            found_problems = []
            found, described_here = pair_base(folder, options, found_problems, notes)
            if split == "test" and not found:
                notes.append(f"{folder}: no masks found, the test split is left out")
                continue
            problems += found_problems
            described = described_here
            rows += [dict(r, split=split) for r in found]
        splits = {s: f for s, f in splits.items() if any(r["split"] == s for r in rows)} or splits
        reason = f"{' '.join(f.name + '/' for f in splits.values())} each with {described}"
        split_source = " + ".join(f"{f.name}/" for f in splits.values()) + " folders"
    else:
        rows, reason = pair_base(root, options, problems, notes)
        image_dir = _folder(root, options.images_dir, IMAGE_DIR_NAMES, "images_dir", [])
        folders = [f"{image_dir.name}/{f.name}/" for f in split_dirs(image_dir).values()] if image_dir else []
        split_source = " + ".join(folders) + " folders" if any(r["split"] for r in rows) else ""
    palette, void, names, palette_note = root_palette(root)
    return DatasetSource(frame=make_frame(rows), layout="paired", reason=reason, split_source=split_source,
                         palette=palette, void=void, class_names=names,
                         notes=notes + palette_note)
