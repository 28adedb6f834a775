"""ADE20K-style layout: `images/training|validation/` + `annotations/training|validation/`, where mask value 0
is "other" and classes start at 1 (data.reduce_zero_label, default true: 0 becomes void, k becomes k-1)."""
from data.layouts.paired import load as load_paired
from data.layouts.base import child_dir

IMAGE_DIRS, ANNOTATION_DIRS, SPLIT_NAMES = ("images",), ("annotations",), ("training", "validation")


def reduce_zero_label_map():
    """Raw value -> class: 0 (other) -> 255 (void), 1..254 -> 0..253, 255 stays void."""
    return {0: 255, **{value: value - 1 for value in range(1, 255)}, 255: 255}


def detect(root):
    images, annotations = child_dir(root, IMAGE_DIRS), child_dir(root, ANNOTATION_DIRS)
    if images and annotations and any(child_dir(images, (name,)) for name in SPLIT_NAMES):
        return "images/{training,validation}/ + annotations/"
    return None


def load(root, options, problems):
    source = load_paired(root, options, problems)
    source.layout = "ade"
    reduce = True if options.reduce_zero_label is None else bool(options.reduce_zero_label)
    if reduce:
        source.label_map = reduce_zero_label_map()
        source.void = 255
        source.reason += "; value 0 = other (void), classes from 1 (data.reduce_zero_label)"
        source.standard = ("ADE20K", 150)
    return source
