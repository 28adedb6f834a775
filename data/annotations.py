"""Read LabelMe and COCO annotations and draw them as class-index masks (`read_annotations`, `render`).

Rules:
- Overlaps: shapes are painted in file order, so where two overlap the later one wins (LabelMe: order of
  `shapes`; COCO: order of `annotations`).
- Rasterisation follows each tool: LabelMe polygons, rectangles and circles are filled as labelme's own
  export does (PIL, boundary pixels included); COCO polygons and RLE are decoded by pycocotools. Other
  LabelMe shape types (line, point, ...) are skipped with a warning.
- Classes: index 0 is what unannotated pixels get, so list the background class first. Class `void` (in a
  class map) becomes IGNORE_INDEX (255). A label that no class takes is an error, before anything is written.
- Annotation files are untrusted: they are parsed as JSON only, referenced images are only read, and a mask
  is named by the basename stem of the image name only; a name with no usable stem is skipped with a warning.
- Every bad file, annotation or shape is listed at once (`raise_all`).
"""
import base64
import dataclasses
import json
import math
import pathlib
import re

import cv2
import numpy as np
import pandas as pd
import yaml

from data.colormaps import default_palette
from data.masks import IGNORE_INDEX

FORMATS = ("labelme", "coco")
MAX_PIXELS = 2**28
LABELME_SHAPES = ("polygon", "rectangle", "circle")


@dataclasses.dataclass
class Annotated:
    """One image's annotations: shapes as (label, kind, geometry) in paint order."""

    source: str
    stem: str
    height: int
    width: int
    shapes: list


@dataclasses.dataclass
class ClassMap:
    """Class names in index order and the class index (or IGNORE_INDEX) of each annotation label."""

    names: list
    labels: dict

    @classmethod
    def from_names(cls, names):
        names = list(names)
        if not names or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"--classes needs distinct non-empty names, got {names}")
        return cls(names, {name: index for index, name in enumerate(names)})

    @classmethod
    def from_yaml(cls, path):
        """YAML mapping `class name: label or [labels]` in index order; each name also matches itself.

        The key `void` is not a class: its labels become IGNORE_INDEX.
        """
        try:
            mapping = yaml.safe_load(pathlib.Path(path).read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(mapping, dict) or not mapping:
            raise ValueError(f"{path}: a class map is a mapping of class name to label(s)")
        names, labels = [], {}
        for name, items in mapping.items():
            items = [] if items is None else [items] if isinstance(items, (str, int)) else items
            if not isinstance(items, list):
                raise ValueError(f"{path}: class {name!r} must map to a label or a list of labels")
            index = IGNORE_INDEX if str(name) == "void" else len(names)
            if index != IGNORE_INDEX:
                names.append(str(name))
            for label in [name, *items]:
                if str(label) in labels and labels[str(label)] != index:
                    raise ValueError(f"{path}: label {label!r} is mapped to two classes")
                labels[str(label)] = index
        return cls(names, labels)

    def check(self, items):
        """Raise ValueError listing the labels no class takes, with a file that uses each."""
        unknown = {}
        for item in items:
            for label, _, _ in item.shapes:
                if label not in self.labels:
                    unknown.setdefault(label, item.source)
        if unknown:
            found = "; ".join(f"{label!r} (e.g. {source})" for label, source in sorted(unknown.items()))
            raise ValueError(f"labels without a class: {found}; add them to --classes or --class-map "
                             f"(map unwanted labels to void)")
        if len(self.names) >= IGNORE_INDEX:
            raise ValueError(f"at most {IGNORE_INDEX - 1} classes, got {len(self.names)}")


def default_class_map(items, labels=None):
    """`background` first, then the labels (default: every label used, sorted)."""
    used = labels if labels is not None else sorted({label for item in items for label, _, _ in item.shapes})
    return ClassMap.from_names(["background"] + [label for label in used if label != "background"])


def safe_stem(name, warn):
    """The basename stem of an untrusted file name, or None (with a warning) when it has none usable."""
    text = str(name)
    base = re.split(r"[\\/]", text)[-1]
    stem = pathlib.PurePosixPath(base).stem if base not in ("", ".", "..") else ""
    if not stem or stem.startswith(".") or any(ord(c) < 32 for c in stem):
        warn(f"{text!r}: no usable file name; skipped")
        return None
    if text.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", text) or ".." in re.split(r"[\\/]", text):
        warn(f"{text!r}: folder parts ignored; mask named {stem}.png")
    return stem


def _load_json(path):
    try:
        return json.loads(pathlib.Path(path).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _check_size(height, width, where):
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0
            and height * width <= MAX_PIXELS):
        raise ValueError(f"{where}: bad image size {height!r}x{width!r} (need positive integers, "
                         f"at most {MAX_PIXELS} pixels)")


def _check_points(points, height, width, where):
    """Finite (x, y) pairs no further than one image size outside the image."""
    array = np.asarray(points, dtype=np.float64) if isinstance(points, list) else np.zeros((0,))
    if array.ndim != 2 or array.shape[1] != 2 or not np.isfinite(array).all():
        raise ValueError(f"{where}: points must be a list of [x, y] numbers")
    if (array[:, 0] < -width).any() or (array[:, 0] > 2 * width).any() or (array[:, 1] < -height).any() \
            or (array[:, 1] > 2 * height).any():
        raise ValueError(f"{where}: coordinates far outside the {width}x{height} image")
    return [tuple(p) for p in array.tolist()]


def _labelme_size(record, path):
    height, width = record.get("imageHeight"), record.get("imageWidth")
    if height is not None and width is not None:
        return height, width
    image = None
    if isinstance(record.get("imageData"), str):
        try:
            data = np.frombuffer(base64.b64decode(record["imageData"], validate=True), np.uint8)
        except ValueError:
            raise ValueError(f"{path}: imageData is not base64") from None
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    elif isinstance(record.get("imagePath"), str):
        image = cv2.imread(str(path.parent / record["imagePath"]), cv2.IMREAD_UNCHANGED)
    if image is None:
        named = f" {path.parent / record['imagePath']}" if isinstance(record.get("imagePath"), str) else ""
        raise ValueError(f"{path}: no imageHeight/imageWidth and the image{named} cannot be read; add them or put "
                         f"the image there")
    return image.shape[:2]


def read_labelme(path, warn=print):
    """LabelMe JSON files (a file or a folder of *.json) -> list of Annotated."""
    path = pathlib.Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{path}: no .json files")
    read = each_listing_errors(files, lambda file: _read_labelme_file(file, warn),
                               f"of {len(files)} LabelMe file(s) cannot be read")
    return [item for _, item in read if item is not None]


def _read_labelme_file(file, warn):
    """One LabelMe JSON file -> Annotated, or None when its image name is unusable (with a warning)."""
    record = _load_json(file)
    if not isinstance(record, dict) or not isinstance(record.get("shapes"), list):
        raise ValueError(f"{file}: not a LabelMe file (no 'shapes' list)")
    stem = safe_stem(record["imagePath"], warn) if isinstance(record.get("imagePath"), str) else file.stem
    if stem is None:
        return None
    height, width = _labelme_size(record, file)
    _check_size(height, width, file)
    shapes = []
    for number, shape in enumerate(record["shapes"]):
        where = f"{file}: shape {number}"
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            raise ValueError(f"{where}: needs a 'label' string")
        kind = shape.get("shape_type") or "polygon"
        if kind not in LABELME_SHAPES:
            warn(f"{where}: shape type {kind!r} skipped (supported: {', '.join(LABELME_SHAPES)})")
            continue
        points = _check_points(shape.get("points"), height, width, where)
        if len(points) < (3 if kind == "polygon" else 2):
            raise ValueError(f"{where}: too few points for a {kind}")
        shapes.append((shape["label"], kind, points))
    return Annotated(str(file), stem, height, width, shapes)


def read_coco(path, warn=print):
    """A COCO instances JSON -> (list of Annotated, category names in id order)."""
    path = pathlib.Path(path)
    record = _load_json(path)
    if not isinstance(record, dict) or not all(isinstance(record.get(k), list) for k in ("images", "categories")):
        raise ValueError(f"{path}: not a COCO file (needs 'images' and 'categories' lists)")
    try:
        categories = {c["id"]: str(c["name"]) for c in sorted(record["categories"], key=lambda c: c["id"])}
        images = {image["id"]: image for image in record["images"]}
    except (KeyError, TypeError):
        raise ValueError(f"{path}: every category needs an id and a name, every image an id") from None
    items, errors = {}, []
    for image_id, image in images.items():
        stem = safe_stem(image.get("file_name", ""), warn)
        if stem is None:
            continue
        try:
            _check_size(image.get("height"), image.get("width"), f"{path}: image {image_id}")
        except ValueError as err:
            errors.append(str(err))
            continue
        items[image_id] = Annotated(f"{path}: image {image_id}", stem, image["height"], image["width"], [])
    for number, annotation in enumerate(record.get("annotations") or []):
        where = f"{path}: annotation {number}"
        if not isinstance(annotation, dict) or annotation.get("category_id") not in categories:
            errors.append(f"{where}: category_id not among the categories")
        elif annotation.get("image_id") not in images:
            errors.append(f"{where}: image_id {annotation.get('image_id')!r} not among the images")
        elif annotation["image_id"] in items:
            items[annotation["image_id"]].shapes.append(
                (categories[annotation["category_id"]], "coco", annotation.get("segmentation")))
    raise_all(errors, "problem(s) in the COCO file")
    return list(items.values()), list(categories.values())


MAX_LISTED = 50
"""Problems listed one per line before the rest are counted."""


def each_listing_errors(things, function, what):
    """Yield (thing, function(thing)) of each thing; the ValueErrors raised are listed together at the end."""
    errors = []
    for thing in things:
        try:
            result = function(thing)
        except ValueError as err:
            errors.append(str(err))
            continue
        yield thing, result
    raise_all(errors, what)


def raise_all(errors, what):
    """Raise one ValueError listing every problem (one line each, up to MAX_LISTED) and their count."""
    if errors:
        shown = errors[:MAX_LISTED] + ([f"... and {len(errors) - MAX_LISTED} more"] if len(errors) > MAX_LISTED else [])
        raise ValueError("\n".join(shown + [f"{len(errors)} {what}; fix or remove them"]))


def _coco_mask(segmentation, height, width, where):
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if p]
        for polygon in polygons:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                raise ValueError(f"{where}: a polygon needs an even number (at least 6) of coordinates")
            _check_points([polygon[i:i + 2] for i in range(0, len(polygon), 2)], height, width, where)
        if not polygons:
            return np.zeros((height, width), bool)
        rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (list, str)):
        if list(segmentation.get("size") or []) != [height, width]:
            raise ValueError(f"{where}: RLE size {segmentation.get('size')!r} is not the image's [{height}, {width}]")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts):
                raise ValueError(f"{where}: RLE counts must be non-negative integers")
            rle = coco_mask.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
        else:
            rle = {"counts": counts.encode("ascii", "replace"), "size": [height, width]}
    else:
        raise ValueError(f"{where}: segmentation must be a list of polygons or an RLE dict")
    try:
        return coco_mask.decode(rle).astype(bool)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _shape_mask(kind, geometry, height, width, where):
    """Boolean (H, W) mask of one shape."""
    if kind == "coco":
        return _coco_mask(geometry, height, width, where)
    from PIL import Image, ImageDraw

    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "polygon":
        draw.polygon(geometry, outline=1, fill=1)
    elif kind == "rectangle":
        (x0, y0), (x1, y1) = geometry[:2]
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    else:
        (cx, cy), (px, py) = geometry[:2]
        radius = math.hypot(px - cx, py - cy)
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=1, fill=1)
    return np.array(canvas, bool)


def render(item, class_map):
    """(H, W) uint8 class-index mask of one Annotated, later shapes painted over earlier ones."""
    labels = np.zeros((item.height, item.width), np.uint8)
    for number, (label, kind, geometry) in enumerate(item.shapes):
        where = f"{item.source}: shape {number}"
        labels[_shape_mask(kind, geometry, item.height, item.width, where)] = class_map.labels[label]
    return labels


def read_annotations(kind, source, classes=None, class_map=None, warn=print):
    """(ClassMap, list of Annotated) of the annotations under `source`.

    Args:
        kind: str. "labelme" (a JSON file or a folder of them) or "coco" (one instances JSON file).
        source: path. The annotation file or folder.
        classes: list of str. Class names in index order; labels must equal them. Defaults to None.
        class_map: path of a YAML class map (see `ClassMap.from_yaml`), or a ClassMap. Defaults to None:
            `background` plus the COCO categories (by id) or the LabelMe labels (sorted).
        warn: callable. Receives one line per skipped shape or file name.

    Raises:
        ValueError: every problem found, one line each.
    """
    if kind not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {kind!r}")
    if classes and class_map:
        raise ValueError("give --classes or --class-map, not both")
    source = pathlib.Path(source)
    if not source.exists():
        raise ValueError(f"{source}: no such file or folder")
    if kind == "coco":
        items, labels = read_coco(source, warn)
    else:
        items, labels = read_labelme(source, warn), None
    seen = {}
    for item in items:
        if item.stem in seen:
            raise ValueError(f"{item.source}: mask name {item.stem}.png is also that of {seen[item.stem]}")
        seen[item.stem] = item.source
    if classes:
        mapping = ClassMap.from_names(classes)
    elif class_map:
        mapping = class_map if isinstance(class_map, ClassMap) else ClassMap.from_yaml(class_map)
    else:
        mapping = default_class_map(items, labels)
    mapping.check(items)
    return mapping, items


def rendered(items, mapping):
    """Yield (Annotated, mask) of every item; shapes that cannot be drawn are raised together at the end."""
    return each_listing_errors(items, lambda item: render(item, mapping), "shape(s) cannot be drawn")


def palette_table(mapping):
    """The palette CSV table (name, r, g, b) of a ClassMap's classes, in the default colours."""
    table = pd.DataFrame(default_palette(len(mapping.names)), columns=["r", "g", "b"])
    table.insert(0, "name", mapping.names)
    return table
