"""Planning rules: pure functions of a dataset fingerprint and the machine's resources, each returning a value
and its one-line reason (docs/planning.md states them); the constants are the rules' thresholds."""
import dataclasses
import functools
import math

import numpy as np

MIN_THICKNESS = 4.0
"""Pixels across that the typical structure of the thinnest class keeps after downscaling."""


MIN_AREA = 16.0
"""Pixels that the small objects (10th percentile of area) of each class keep after downscaling."""


CONTEXT = 2.0
"""A crop side spans this many typical object extents: the object whole, with half its size of context around."""


MIN_RESIZE_GAIN = 0.85
"""Scale factors above this are not worth the interpolation: images stay at their own resolution."""


SIZE_SPREAD = 1.5
"""Max/min image side ratio above which images count as of varied size (no fixed resize)."""


BOTTLENECK = 8
"""Smallest feature map side (pixels) at the bottom of the U-Net."""


DEPTHS = range(3, 7)


RARE_SHARE = 0.02
"""Multi-class sets whose rarest class has less than this pixel share get median-frequency class weights."""


GRAVITY_SPREAD = 0.15
"""Vertical spread of class mean rows (0..1) from which a scene counts as gravity-aligned."""


BACKGROUND_SHARE = 0.5
"""Class 0 with more than this pixel share is background: its 'objects' do not set the scale."""


TARGET_STEPS = 1500
"""Optimizer steps a plan without a time budget aims for."""


MIN_PASSES = 20
"""Passes over the training images a CPU budget must buy at 32 base filters; fewer: 16 filters."""


CPU_PIXELS_PER_CORE_S = 24_000
"""Training-crop pixels per second and CPU core of a 32-filter U-Net in float32 (measured on 2 cores: 44-49 k/s
for depth 4 on CamVid and ISBI crops; 16 filters are about 2.4x faster)."""


ACTIVATION_BYTES_PER_PIXEL_FILTER = 2 * 24 * 4
"""U-Net training memory per input pixel and base filter: levels sum to ~2x the top level, ~24 stored tensors
per level (encoder and decoder convolutions, batch norm, activations, their gradients), float32 bytes."""


@dataclasses.dataclass
class Decision:
    """One rule's outcome: the config key it sets (None: information only), the value and why."""

    name: str
    value: object
    reason: str
    key: str | None = None


def channel_counts(fp):
    return ", ".join(f"{count} with {channels}" for channels, count in fp.file_channels.items())


def show_value(value):
    return "null" if value is None else value


def foreground_classes(fp):
    """Classes whose objects set the scale: every class with training pixels except a background class 0."""
    names = [n for n in fp.class_names if fp.objects.get(n) is not None]
    first = fp.class_names[0]
    if len(names) > 1 and first in names and fp.class_share.get(first, 0) > BACKGROUND_SHARE:
        names.remove(first)
    return names


def working_scale(fp, crop_side):
    """(scale factor, reason): downscale so a crop spans CONTEXT typical object extents, unless that leaves the
    thinnest class fewer than MIN_THICKNESS pixels across or the small objects fewer than MIN_AREA pixels."""
    classes = foreground_classes(fp)
    if not classes:
        return 1.0, "no objects in the training masks: images keep their resolution"
    extent = float(np.median([fp.objects[c].extent["p50"] for c in classes]))
    context = min(1.0, crop_side / (CONTEXT * extent))
    thin = min(classes, key=lambda c: fp.objects[c].thickness["p50"])
    thickness = max(fp.objects[thin].thickness["p50"], 1.0)
    small = min(classes, key=lambda c: fp.objects[c].area["p10"])
    area = max(fp.objects[small].area["p10"], 1.0)
    floors = {f"class {thin!r} (typical thickness {thickness:.0f} px) keeps {MIN_THICKNESS:.0f} px across":
              MIN_THICKNESS / thickness,
              f"small {small!r} objects (10th percentile {area:.0f} px) keep {MIN_AREA:.0f} px":
              math.sqrt(MIN_AREA / area)}
    floor_reason, floor = max(floors.items(), key=lambda item: item[1])
    why = f"typical object extent {extent:.0f} px; a {crop_side} px crop spans {CONTEXT:g}x it at scale {context:.2f}"
    if context >= 1.0:
        return 1.0, f"{why}: no downscaling needed"
    if floor >= 1.0:
        return 1.0, f"{why}, but {floor_reason} only at full resolution"
    if floor > context:
        return floor, f"{why}, limited to {floor:.2f} so that {floor_reason}"
    return context, why


def plan_resize(fp, crop_side):
    """(data.resize (H, W) or None, scale, reason)."""
    scale, why = working_scale(fp, crop_side)
    spread = max(fp.height["max"] / max(fp.height["min"], 1), fp.width["max"] / max(fp.width["min"], 1))
    if scale > MIN_RESIZE_GAIN:
        return None, 1.0, f"{why}; images keep their resolution"
    if spread > SIZE_SPREAD:
        return None, 1.0, (f"{why}, but image sides vary {spread:.1f}x: one fixed size would rescale objects "
                           "unevenly, so images keep their resolution")
    height, width = fp.median_size
    size = [max(8, int(round(height * scale))), max(8, int(round(width * scale)))]
    return size, scale, f"{why}: median image {height}x{width} resized to {size[0]}x{size[1]}"


def crop_budget(resources):
    """(largest crop side, reason): bigger crops (more context) on GPUs, as nnU-Net prefers patch over batch."""
    if resources.gpus:
        return 512, "GPU: crops up to 512x512 pixels"
    return 256, "CPU: crops up to 256x256 pixels"


def plan_crop(size, side, divisor, square=False):
    """(data.image_size, reason): the whole working image when it fits side x side pixels, else a crop of that
    area with the images' aspect ratio, or `square` (data without an up/down direction, so that quarter turns keep
    the crop's shape) where a square crop of at least half that area fits inside the images; sides are multiples
    of the model's divisor."""
    height, width = size

    def up(value):
        return max(divisor, divisor * math.ceil(value / divisor))

    if height * width <= side * side:
        crop = [up(height), up(width)]
        return crop, f"the whole {height}x{width} working image fits in one crop (sides rounded up to {divisor})"
    square_side = min(side, divisor * (min(height, width) // divisor))
    if square and 2 * square_side**2 >= side * side:
        return [square_side, square_side], (f"square {square_side}x{square_side} crops of the {height}x{width} "
                                            f"working images (no up/down direction: quarter turns keep the shape), "
                                            f"multiples of {divisor}")
    factor = math.sqrt(side * side / (height * width))
    crop = [min(up(height), max(divisor, divisor * round(height * factor / divisor))),
            min(up(width), max(divisor, divisor * round(width * factor / divisor)))]
    return crop, (f"{side}x{side} pixels in the {height}x{width} working images' aspect ratio, multiples of "
                  f"{divisor}")


@functools.lru_cache(maxsize=None)
def unet_receptive_field(depth):
    """Theoretical receptive field (pixels) of the U-Net of this depth (`models.receptive_field`)."""
    from models.receptive_field import theoretical_receptive_field
    from models.registry import get_model

    return theoretical_receptive_field(get_model("unet", (None, None, 3), 2, depth=depth, base_filters=2))


def plan_depth(crop, receptive_field=unet_receptive_field):
    """(U-Net depth, reason): the shallowest depth whose receptive field covers the crop's shorter side, no deeper
    than leaves a BOTTLENECK-pixel feature map at the bottom."""
    short = min(crop)
    deepest = max(d for d in DEPTHS if short / 2**d >= BOTTLENECK or d == DEPTHS[0])
    for depth in DEPTHS:
        if depth == deepest or receptive_field(depth) >= short:
            field = receptive_field(depth)
            covers = "covers" if field >= short else "is the largest that keeps an 8 px bottleneck, below"
            return depth, f"receptive field {field} px {covers} the crop's {short} px side"
    raise AssertionError("unreachable")


def plan_width(resources, crop, train_images):
    """(base filters, reason): 32, or 16 where a CPU budget buys fewer than MIN_PASSES passes over the training
    images at 32 filters (CPU_PIXELS_PER_CORE_S per core)."""
    if resources.gpus or resources.budget_s is None:
        return 32, "32 base filters (U-Net and nnU-Net default)"
    pass_pixels = train_images * crop[0] * crop[1]
    passes = resources.budget_s * CPU_PIXELS_PER_CORE_S * resources.cpu_cores / pass_pixels
    if passes >= MIN_PASSES:
        return 32, f"32 base filters (U-Net and nnU-Net default): the budget buys ~{passes:.0f} passes on this CPU"
    return 16, (f"16 base filters: at 32 the budget would buy only ~{passes:.1f} passes over the {train_images} "
                f"training crops on {resources.cpu_cores} CPU cores (< {MIN_PASSES}); a narrower network trains "
                f"~2.4x the steps")


def plan_batch(crop, base_filters, train_images, resources):
    """(batch size, reason): what fits in the memory at hand, at most 16 (GPU) or 8 (CPU) crops of 256x256
    pixels' worth, and at most a quarter of the training images (several steps per epoch); at least 2."""
    pixels = crop[0] * crop[1]
    per_image = pixels * base_filters * ACTIVATION_BYTES_PER_PIXEL_FILTER
    fits = resources.memory_bytes // per_image
    cap = (16 if resources.gpus else 8) * 256 * 256 // pixels
    quarter = train_images // 4
    batch = int(max(2, min(fits, cap, quarter, 64)))
    limit = min((fits, "memory"), (cap, "pixels per step"), (quarter, "a quarter of the training images"))
    return batch, (f"{batch} crops: est. {per_image / 1024**2:.0f} MiB each, {resources.memory_bytes / 1024**3:.1f}"
                   f" GiB usable; bound by {limit[1]}")


def plan_loss(fp):
    """(loss name, class weights scheme, reason)."""
    present = {n: s for n, s in fp.class_share.items() if s > 0}
    rarest = min(present, key=present.get) if present else None
    share = present.get(rarest, 0)
    if len(fp.class_names) > 2 and share < RARE_SHARE:
        return "dice_ce", "median", (f"Dice + cross-entropy; rarest class {rarest!r} has {share:.2%} of the pixels "
                                     f"(< {RARE_SHARE:.0%}): median-frequency class weights")
    return "dice_ce", "none", (f"Dice + cross-entropy: the Dice term balances the classes (rarest {rarest!r} "
                               f"{share:.2%} of the pixels); no class weights")


def gravity_aligned(fp):
    """(bool, reason): classes sit at clearly different heights (sky above road) but not as much left/right."""
    common = [n for n, s in fp.class_share.items() if s >= 0.01 and fp.class_row.get(n) is not None]
    if len(common) < 2:
        return False, "fewer than two classes with 1% of the pixels: no orientation signal"
    rows = [fp.class_row[n] for n in common]
    cols = [fp.class_col[n] for n in common]
    vertical, horizontal = max(rows) - min(rows), max(cols) - min(cols)
    top, bottom = common[int(np.argmin(rows))], common[int(np.argmax(rows))]
    if vertical >= GRAVITY_SPREAD and vertical >= 2 * horizontal:
        return True, (f"gravity-aligned: {top!r} sits high (mean row {min(rows):.2f}) and {bottom!r} low "
                      f"({max(rows):.2f}), left/right spread only {horizontal:.2f}")
    return False, f"no up/down structure: class mean rows spread {vertical:.2f}, columns {horizontal:.2f}"


def plan_augment(fp, crop):
    """Decisions for the augment section; quarter turns only where there is no up/down and the crop is square."""
    upright, why = gravity_aligned(fp)
    square = crop[0] == crop[1]
    turns = ("no quarter turns: the data has an up/down direction" if upright else
             "quarter turns with the vertical flips" if square else
             f"no quarter turns: the {crop[0]}x{crop[1]} crop is not square (a turn would change its shape)")
    decisions = [
        Decision("hflip", 0.5, "left-right mirrors are as plausible as the originals", "augment.hflip"),
        Decision("vflip", 0.0 if upright else 0.5, why + ("; no vertical flips" if upright else "; vertical flips"),
                 "augment.vflip"),
        Decision("rotate90", 0.5 if not upright and square else 0.0, turns, "augment.rotate90"),
        Decision("rotate", 5.0 if upright else 15.0, "small tilts only" if upright else "any small rotation",
                 "augment.rotate"),
    ]
    spreads = [fp.objects[c].extent["p90"] / max(fp.objects[c].extent["p10"], 1) for c in foreground_classes(fp)]
    wide = bool(spreads) and float(np.median(spreads)) > 4
    decisions.append(Decision("scale", [0.5, 1.5] if wide else [0.75, 1.25],
                              f"object extents vary {float(np.median(spreads)) if spreads else 1:.1f}x "
                              f"(90th/10th percentile): {'wide' if wide else 'moderate'} scale jitter",
                              "augment.scale"))
    colour = fp.channels == 3 and max(fp.intensity_mean) - min(fp.intensity_mean) > 0.02
    decisions.append(Decision("color_jitter", 0.1 if colour else 0.0,
                              "colour images: saturation/hue jitter" if colour else
                              "grey (or grey stored as RGB): no colour jitter", "augment.color_jitter"))
    decisions.append(Decision("brightness_contrast", 0.2, "brightness/contrast jitter for acquisition changes",
                              "augment.brightness_contrast"))
    return decisions


def plan_epochs(train_images, batch_size):
    """(epochs, reason) without a time budget: about TARGET_STEPS optimizer steps, 20 to 200 epochs."""
    steps = max(1, math.ceil(train_images / batch_size))
    epochs = int(min(200, max(20, round(TARGET_STEPS / steps))))
    return epochs, (f"~{TARGET_STEPS} steps at {steps} per epoch (--time-budget fits the epochs to a wall-clock "
                    "budget instead)")
