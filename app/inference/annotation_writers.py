"""Predictions as annotations a labelling tool opens: CVAT "Segmentation mask 1.1", LabelMe JSON, COCO JSON.

Each writer takes (image path, class-index mask) pairs and writes the files a tool imports; what it writes reads
back (`app.dataset.importing`, the `--data` layouts) to the same masks: exactly for CVAT and COCO RLE,
within the polygon tolerance for LabelMe and COCO polygons.

Polygons (LabelMe, COCO polygons) have no holes. One polygon is written per connected region (8-connected)
and class, traced by `cv2.findContours` and simplified by `cv2.approxPolyDP` at `tolerance` pixels; shapes are
ordered by area, largest first, and a hole is written as a later shape of what fills it: a `background`
(class 0) polygon for an empty hole, the other class's own polygon for a region inside it. LabelMe's export,
segkit's import and COCO's readers paint later shapes over earlier ones, so the mask comes back. LabelMe regions
too thin for a polygon (fewer than 3 corners: one pixel wide, or a line at the tolerance) are left out and
counted; `merge_small_regions` (`app.predict --min-region`) removes specks before any format is written.
"""
import dataclasses
import json
import os
import pathlib

import cv2
import numpy as np

from app.runtime.outputs import output_dir, write_image, write_text
from data.layouts.label_files import BACKGROUND_NAMES

LABELME_VERSION = "5.5.0"
"""The LabelMe file format version written (labelme 5.x reads and writes these fields)."""
CVAT_HEADER = "# label:color_rgb:parts:actions"
BLACK = (0, 0, 0)
COCO_SEGMENTATIONS = ("rle", "polygon")


@dataclasses.dataclass
class Polygon:
    """One shape: class index, (N, 2) (x, y) corners, area in pixels of the filled region."""

    label: int
    points: np.ndarray
    area: float
    hole: bool = False


@dataclasses.dataclass
class Tally:
    """What the writers wrote, for the command's summary line."""

    images: int = 0
    shapes: int = 0
    holes: int = 0
    specks: int = 0

    def describe(self):
        text = f"{self.images} image(s)" + (f", {self.shapes} shape(s)" if self.shapes else "")
        if self.holes:
            text += f", {self.holes} hole(s) written as later background shapes"
        if self.specks:
            text += f"; {self.specks} region(s) too thin for a polygon (under 3 corners) left out"
        return text


def _outer_contours(mask, tolerance, offset=(0, 0)):
    """Outer boundaries of a boolean mask's regions (RETR_CCOMP's top level: islands inside holes included)."""
    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE,
                                           offset=offset)
    if hierarchy is None:
        return []
    outer = [c for c, h in zip(contours, hierarchy[0]) if h[3] == -1]
    return [cv2.approxPolyDP(c, tolerance, True) if tolerance > 0 else c for c in outer]


def _background_holes(labels):
    """Boolean masks (cropped) with offsets of the background regions (4-connected) that touch no image border."""
    count, components, stats, _ = cv2.connectedComponentsWithStats((labels == 0).astype(np.uint8), connectivity=4)
    height, width = labels.shape
    for index in range(1, count):
        x, y, w, h = stats[index, :4]
        if x == 0 or y == 0 or x + w == width or y + h == height:
            continue
        yield components[y:y + h, x:x + w] == index, (int(x), int(y))


def polygons(labels, tolerance=1.0, continuous=False):
    """Polygons of a class-index mask in paint order, and the number of regions too thin for one (left out).

    Every region of classes 1.. is a polygon; background regions enclosed by other classes are holes (class 0
    polygons). Sorting by filled area, largest first, puts each region after every region enclosing it.
    Corners are pixel indices (LabelMe: labelme and segkit fill polygons with PIL, boundary pixels included), or
    with `continuous` COCO's coordinates where pixel i spans [i, i + 1): traced on the mask enlarged 2x, the
    polygon runs a quarter pixel outside the boundary pixels' centres, so pycocotools fills exactly the region
    (no region is a speck there).
    """
    labels = np.asarray(labels)
    scale = 2 if continuous else 1
    if continuous:
        labels = np.repeat(np.repeat(labels, 2, axis=0), 2, axis=1)
    tolerance = tolerance * scale
    pieces = [(label, _outer_contours(labels == label, tolerance), False)
              for label in np.unique(labels) if label != 0]
    pieces += [(0, _outer_contours(mask, tolerance, offset), True) for mask, offset in _background_holes(labels)]
    found, specks = [], 0
    for label, contours, hole in pieces:
        for contour in contours:
            points = contour.reshape(-1, 2)
            if len(points) < 3:
                specks += 1
                continue
            area = float(cv2.contourArea(contour)) / scale**2
            found.append(Polygon(int(label), (points + 0.5) / 2 if continuous else points, area, hole))
    found.sort(key=lambda polygon: -polygon.area)
    return found, specks


def merge_small_regions(labels, min_pixels):
    """A copy of class-index mask `labels` where each connected region (8-connected, any class) of fewer than
    `min_pixels` pixels takes the most common class around it: specks a labeller would only delete."""
    labels = np.asarray(labels)
    merged = labels.copy()
    if min_pixels <= 1:
        return merged
    height, width = labels.shape
    for label in np.unique(labels):
        _, regions, stats, _ = cv2.connectedComponentsWithStats((labels == label).astype(np.uint8), connectivity=8)
        for region in np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_pixels) + 1:
            x, y, w, h = stats[region, :4]
            x0, y0, x1, y1 = max(x - 1, 0), max(y - 1, 0), min(x + w + 1, width), min(y + h + 1, height)
            inside = regions[y0:y1, x0:x1] == region
            ring = (cv2.dilate(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) == 1) & ~inside
            around = labels[y0:y1, x0:x1][ring]
            if around.size:
                merged[y0:y1, x0:x1][inside] = np.bincount(around).argmax()
    return merged


def check_class_names(names, fmt):
    """Raise ValueError for class names `fmt` cannot hold."""
    for name in names:
        if not name or not name.strip():
            raise ValueError(f"--as {fmt}: class names must not be empty, got {names}")
        if fmt == "cvat" and ":" in name:
            raise ValueError(f"--as cvat: class name {name!r} holds ':', which separates the fields of CVAT's "
                             "labelmap.txt; rename the class (data.class_names) or use --as labelme or coco")
    if len(set(names)) != len(names):
        raise ValueError(f"--as {fmt}: class names must be distinct, got {names}")


class CvatWriter:
    """CVAT "Segmentation mask 1.1": labelmap.txt, ImageSets/Segmentation/default.txt, SegmentationClass/*.png.

    Zip the output folder's contents and upload them in CVAT as the task's annotations (Actions > Upload
    annotations > Segmentation mask 1.1). Masks are RGB in the run's class colours, which must be distinct.
    Black is CVAT's `background`, the pixels it leaves unannotated: class 0 is written as it when it is black or
    named like a background; no other class may be black.
    """

    name = "cvat"

    def __init__(self, out, class_names, colours, **_):
        check_class_names(class_names, self.name)
        names = list(class_names)
        colours = [tuple(int(v) for v in colour) for colour in np.asarray(colours)[:len(names)]]
        if colours[0] == BLACK or names[0].lower() in BACKGROUND_NAMES:
            names[0], colours[0] = "background", BLACK
        for index, colour in enumerate(colours):
            if colour == BLACK and index:
                raise ValueError(f"--as cvat: class {names[index]!r} is black, CVAT's colour of unannotated "
                                 "background: give it another colour in the run's palette.csv")
            if colour in colours[:index]:
                raise ValueError(f"--as cvat: classes {names[colours.index(colour)]!r} and {names[index]!r} share "
                                 f"the colour {colour}; CVAT tells classes apart by colour: give them distinct "
                                 "colours in the run's palette.csv")
        self.out, self.class_names, self.colours = pathlib.Path(out), names, np.array(colours, np.uint8)
        self.stems, self.tally = [], Tally()

    def targets(self, stems):
        return [self.out / "labelmap.txt", self.out / "ImageSets" / "Segmentation" / "default.txt",
                *(self.out / "SegmentationClass" / f"{stem}.png" for stem in stems)]

    def add(self, image_path, labels):
        stem = pathlib.Path(image_path).stem
        write_image(output_dir(self.out / "SegmentationClass") / f"{stem}.png", self.colours[labels])
        self.stems.append(stem)
        self.tally.images += 1

    def close(self):
        lines = [CVAT_HEADER] + [f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(self.class_names, self.colours)]
        write_text(output_dir(self.out) / "labelmap.txt", "\n".join(lines) + "\n")
        write_text(output_dir(self.out / "ImageSets" / "Segmentation") / "default.txt",
                   "".join(f"{stem}\n" for stem in self.stems))
        return self.tally


class LabelmeWriter:
    """One LabelMe JSON per image, `<stem>.json`, with `imagePath` relative to it and no embedded image data, and
    `labels.txt`, the class names in index order (as `labelme --labels` takes it and the LabelMe layout reads it).

    Class 0 is LabelMe's unlabelled `background`: its regions get no polygon, its holes are `background` polygons.
    Open them with `labelme IMAGES --output OUT --labels OUT/labels.txt`.
    """

    name = "labelme"

    def __init__(self, out, class_names, colours=None, tolerance=1.0, **_):
        check_class_names(class_names, self.name)
        self.out, self.class_names, self.tolerance = pathlib.Path(out), ["background", *class_names[1:]], tolerance
        check_class_names(self.class_names, self.name)
        self.tally = Tally()

    def targets(self, stems):
        return [self.out / "labels.txt", *(self.out / f"{stem}.json" for stem in stems)]

    def add(self, image_path, labels):
        found, specks = polygons(labels, self.tolerance)
        shapes = [{"label": self.class_names[polygon.label], "points": polygon.points.astype(float).tolist(),
                   "group_id": None, "description": "hole" if polygon.hole else "", "shape_type": "polygon",
                   "flags": {}, "mask": None} for polygon in found]
        record = {"version": LABELME_VERSION, "flags": {}, "shapes": shapes,
                  "imagePath": pathlib.Path(os.path.relpath(pathlib.Path(image_path).resolve(),
                                                            self.out.resolve())).as_posix(),
                  "imageData": None, "imageHeight": int(labels.shape[0]), "imageWidth": int(labels.shape[1])}
        write_text(output_dir(self.out) / f"{pathlib.Path(image_path).stem}.json",
                   json.dumps(record, ensure_ascii=False, indent=2) + "\n")
        self.tally.images += 1
        self.tally.shapes += len(shapes)
        self.tally.holes += sum(polygon.hole for polygon in found)
        self.tally.specks += specks

    def close(self):
        write_text(output_dir(self.out) / "labels.txt", "".join(f"{name}\n" for name in self.class_names))
        return self.tally


class CocoWriter:
    """One COCO JSON, `annotations.json`: every class a category (id = class index + 1; class 0 too, named
    `background` as COCO readers number it first, so that polygon holes can be background shapes), one annotation
    per connected region and class (not class 0), as compressed RLE (exact) or polygons (`segmentation="polygon"`,
    within the tolerance)."""

    name = "coco"

    def __init__(self, out, class_names, colours=None, tolerance=1.0, segmentation="rle", **_):
        check_class_names(class_names, self.name)
        if segmentation not in COCO_SEGMENTATIONS:
            raise ValueError(f"COCO segmentation must be one of {', '.join(COCO_SEGMENTATIONS)}, got {segmentation!r}")
        self.out, self.class_names, self.tolerance = pathlib.Path(out), ["background", *class_names[1:]], tolerance
        check_class_names(self.class_names, self.name)
        self.segmentation, self.images, self.annotations, self.tally = segmentation, [], [], Tally()

    def targets(self, stems):
        return [self.out / "annotations.json"]

    def _annotation(self, image_id, label, segmentation, area, bbox):
        return {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                "segmentation": segmentation, "area": float(area), "bbox": [float(v) for v in bbox], "iscrowd": 0}

    def add(self, image_path, labels):
        from pycocotools import mask as coco_mask

        image_id = len(self.images) + 1
        height, width = labels.shape
        self.images.append({"id": image_id, "file_name": pathlib.Path(image_path).name, "height": int(height),
                            "width": int(width)})
        self.tally.images += 1
        if self.segmentation == "polygon":
            found, specks = polygons(labels, self.tolerance, continuous=True)
            for polygon in found:
                low, high = polygon.points.min(0), polygon.points.max(0)
                self.annotations.append(self._annotation(image_id, polygon.label,
                                                         [polygon.points.astype(float).ravel().tolist()],
                                                         polygon.area, (*low, *(high - low))))
            self.tally.shapes += len(found)
            self.tally.holes += sum(polygon.hole for polygon in found)
            self.tally.specks += specks
            return
        for label in np.unique(labels):
            if label == 0:
                continue
            count, regions = cv2.connectedComponents((labels == label).astype(np.uint8), connectivity=8)
            for region in range(1, count):
                rle = coco_mask.encode(np.asfortranarray(regions == region, dtype=np.uint8))
                segmentation = {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}
                self.annotations.append(self._annotation(image_id, label, segmentation, coco_mask.area(rle),
                                                         coco_mask.toBbox(rle)))
                self.tally.shapes += 1

    def close(self):
        record = {"info": {"description": "segkit predictions"}, "licenses": [], "images": self.images,
                  "annotations": self.annotations,
                  "categories": [{"id": index + 1, "name": name, "supercategory": ""}
                                 for index, name in enumerate(self.class_names)]}
        write_text(output_dir(self.out) / "annotations.json", json.dumps(record, ensure_ascii=False) + "\n")
        return self.tally


WRITERS = {writer.name: writer for writer in (CvatWriter, LabelmeWriter, CocoWriter)}
FORMATS = tuple(WRITERS)


def annotation_writer(fmt, out, class_names, colours, tolerance=1.0, coco_segmentation="rle"):
    """The writer of format `fmt` (one of FORMATS) into folder `out`."""
    if fmt not in WRITERS:
        raise ValueError(f"--as must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if tolerance < 0:
        raise ValueError(f"--polygon-tolerance must be >= 0 pixels, got {tolerance}")
    return WRITERS[fmt](out, class_names, colours, tolerance=tolerance, segmentation=coco_segmentation)
