"""COCO JSON and LabelMe layouts: `--data` names a COCO instances file or a folder of LabelMe JSON files.

The annotations are rendered once into class-index masks in a cache folder (data.import_dir, default
`<runs dir>/imported`, never inside the dataset) by `data.annotations`; a later run reuses the cache
while the annotation files keep their size and modification time. Images are found by file stem next to the
annotations (and, for an `annotations/` folder, in the folder above it).
"""
import hashlib
import json
import os
import pathlib
import shutil
import tempfile

import cv2

from data.annotations import ClassMap, palette_table, read_annotations, rendered
from data.layouts.base import DatasetSource, image_files, make_frame
from data.masks import IGNORE_INDEX, read_palette

DEFAULT_IMPORT_DIR = pathlib.Path("runs") / "imported"
CACHE_VERSION = 1


def detect_coco(root):
    return "a COCO JSON file" if root.is_file() and root.suffix.lower() == ".json" else None


def detect_labelme(root):
    if not root.is_dir():
        return None
    files = sorted(p for p in root.glob("*.json") if not p.name.startswith("."))
    if not files:
        return None
    try:
        record = json.loads(files[0].read_bytes())
    except (OSError, ValueError):
        return None
    return f"{len(files)} LabelMe JSON files" if isinstance(record, dict) and "shapes" in record else None


def _sources(kind, root):
    if kind == "coco":
        return [root]
    label = _label_file(root)
    return sorted(p for p in root.glob("*.json") if not p.name.startswith(".")) + ([label.path] if label else [])


def _label_file(root):
    """The class list beside LabelMe files (`labels.txt` as `labelme --labels` takes it, `class_names.txt`,
    `classes.txt`), or None."""
    from data.layouts.label_files import find_label_file

    return find_label_file([root], [], [])


def labelme_class_map(label):
    """The ClassMap of a LabelMe class list: its names in order, `_background_` class 0, `__ignore__` void."""
    names = list(label.names)
    if names[0] != "background":
        names.insert(0, "background")  # unannotated pixels
    labels = {name: index for index, name in enumerate(names)}
    labels.update({"_background_": 0, "__ignore__": IGNORE_INDEX})
    return ClassMap(names, labels)


def fingerprint(kind, root):
    """Hash of the annotation files' names, sizes and modification times (and the cache format)."""
    digest = hashlib.sha256(f"{CACHE_VERSION} {kind}".encode())
    for path in _sources(kind, root):
        stat = path.stat()
        digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_folder(root, import_dir):
    """`<import_dir>/<name>-<hash of the absolute path>`: one cache per annotation source."""
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    return pathlib.Path(import_dir or DEFAULT_IMPORT_DIR) / f"{root.stem}-{tag}"


def convert(kind, root, import_dir, notes):
    """The cache folder holding masks/ and palette.csv for `root`, converted now or reused."""
    cache = cache_folder(root, import_dir)
    stamp = fingerprint(kind, root)
    manifest = cache / "source.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") == stamp:
        notes.append(f"annotations converted earlier reused from {cache}")
        return cache, "reused"
    cache.parent.mkdir(parents=True, exist_ok=True)
    warnings = []
    scratch = pathlib.Path(tempfile.mkdtemp(dir=cache.parent, prefix=f".{cache.name}-"))
    try:
        label = _label_file(root) if kind == "labelme" else None
        mapping, items = read_annotations(kind, root, class_map=labelme_class_map(label) if label else None,
                                          warn=warnings.append)
        if label:
            notes.append(f"class order from {label.path}")
        (scratch / "masks").mkdir()
        for item, mask in rendered(items, mapping):
            if not cv2.imwrite(str(scratch / "masks" / f"{item.stem}.png"), mask):
                raise OSError(f"{scratch}: cannot write the converted masks")
        palette_table(mapping).to_csv(scratch / "palette.csv", index=False)
        (scratch / "source.json").write_text(
            json.dumps({"source": str(root.resolve()), "kind": kind, "fingerprint": stamp}, indent=2))
        if cache.exists():
            shutil.rmtree(cache)
        os.replace(scratch, cache)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    notes += [f"{kind}: {line}" for line in warnings]
    notes.append(f"annotations converted to {cache}")
    return cache, "converted"


def _image_dirs(kind, root):
    folder = root.parent if kind == "coco" else root
    return [folder, folder.parent] if folder.name.lower() == "annotations" else [folder]


def _load(kind, root, options, problems):
    notes = []
    try:
        cache, state = convert(kind, root, options.import_dir, notes)
    except ValueError as err:
        problems += [line if str(root) in line else f"{root}: {line}" for line in str(err).splitlines()]
        return None
    masks = image_files(cache / "masks", problems)
    images = {}
    for folder in _image_dirs(kind, root):
        for stem, path in image_files(folder, problems, recursive=True).items():
            if cache.resolve() in path.resolve().parents:
                continue
            if stem in images:
                problems.append(f"{path}: two images named {stem!r} ({images[stem]}, {path}); rename one")
            images[stem] = path
    rows = []
    for stem, mask in sorted(masks.items()):
        if stem in images:
            rows.append({"image": str(images[stem]), "mask": str(mask), "instances": None, "split": None})
        else:
            problems.append(f"{root}: the image of annotated {stem!r} was not found under "
                            f"{', '.join(str(d) for d in _image_dirs(kind, root))}; put the images beside the "
                            f"annotations")
    palette = read_palette(cache / "palette.csv")
    reason = f"{root.name}, {'converted to' if state == 'converted' else 'cached in'} {cache}"
    return DatasetSource(frame=make_frame(rows), layout=kind, reason=reason, split_source="",
                         class_names=[str(n) for n in palette["name"]], palette=palette, void=255,
                         notes=notes)


def load_coco(root, options, problems):
    return _load("coco", root, options, problems)


def load_labelme(root, options, problems):
    return _load("labelme", root, options, problems)

