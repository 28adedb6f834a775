"""SegNet/CamVid layout: `train/` + `trainannot/` (or `train_labels/`, `train_masks/`, ...) per split."""
from data.layouts.base import DatasetSource, make_frame, pair_folders, split_dirs
from data.layouts.palettes import root_palette

ANNOTATION_SUFFIXES = ("annot", "_annot", "_labels", "_label", "_masks", "_mask", "_gt")


def _annotation_dir(root, folder):
    for suffix in ANNOTATION_SUFFIXES:
        for path in (root / f"{folder.name}{suffix}", root / f"{folder.name.lower()}{suffix}"):
            if path.is_dir():
                return path
    return None


def detect(root):
    for folder in split_dirs(root).values():
        annotations = _annotation_dir(root, folder)
        if annotations is not None:
            return f"{folder.name}/ + {annotations.name}/"
    return None


def load(root, options, problems):
    notes, rows, described = [], [], []
    for split, folder in split_dirs(root).items():
        annotations = _annotation_dir(root, folder)
        if annotations is None:
            problems.append(f"{folder}: no annotation folder beside it; name it {folder.name}annot/ or "
                            f"{folder.name}_labels/")
            continue
        found, suffixes = pair_folders(folder, annotations, options, problems, notes)
        rows += [dict(r, split=split) for r in found]
        described.append(f"{folder.name}/ + {annotations.name}/" + (f" ({suffixes})" if suffixes else ""))
    palette, void, names, palette_note = root_palette(root)
    return DatasetSource(frame=make_frame(rows), layout="segnet", reason=", ".join(described),
                         split_source=" + ".join(d.split(" ")[0] for d in described) + " folders",
                         palette=palette, void=void, class_names=names,
                         notes=notes + palette_note)
