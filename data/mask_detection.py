"""Decide how masks encode classes from the values of every mask, say why, and refuse to guess when unsure.

`survey_masks` reads the masks once (all of them up to SURVEY_LIMIT, else an even sample) and counts values
(single-channel masks) or colours (RGB masks); `detect_encoding` turns the survey, the config and a layout's
facts into a `MaskEncoding` whose `reason` says why. Ambiguous data stops with one line naming a file and the
flag that settles it (`--mask index|binary|rgb`, `--set data.palette=...`, `--set data.void=255`).

A layout's facts fix or frame the class count: names from a label file (`class_source`: CVAT's labelmap.txt, ...)
fix it, and values or colours beyond them are one error; a benchmark's list (`standard`: PASCAL VOC's 21, ADE20K's
150) only names the classes the masks use and is said in the reason. Without either the count is what the masks use,
and a top value in a handful of pixels of one or two masks (a stray value) stops rather than adding empty classes.
JPEG masks of a few grey levels are snapped to them (`MaskEncoding.levels`).
The survey and the decision stay in one module (past 400 lines): each rule of the decision reads the survey's
counts, and the reasons it writes quote them.
"""
import concurrent.futures
import dataclasses
import pathlib

import numpy as np
import pandas as pd

from data.colormaps import VOC_VOID_INDEX, voc_colormap
from data.images import read_array
from data.masks import IGNORE_INDEX, MASK_KINDS, MaskEncoding, ReadError, mask_array, read_palette

SURVEY_LIMIT = 10_000
"""Masks read by the survey; larger datasets are sampled evenly (the full scan still checks every file)."""
JPEG_SUFFIXES = (".jpg", ".jpeg")
MAX_COLOURS = 1024
"""More distinct colours than this is a photo or a lossy colour mask, not a class mask."""
STRAY_MASKS, STRAY_SHARE = 2, 0.001
"""A top class value in at most this many masks and this share of the pixels, with an empty class below it,
is taken for a stray value (a slip of the brush, an anti-aliased edge) and reported rather than trained."""
MAX_LEVELS, LEVEL_SHARE = 8, 0.95
"""JPEG masks of at most this many grey levels, this share of pixels near one of them, are snapped to them."""


@dataclasses.dataclass
class MaskSurvey:
    """Values and colours found in the masks, with a file that holds each (for messages)."""

    histogram: np.ndarray
    """Pixel count per value of single-channel masks (palette PNGs: per index)."""
    value_file: dict
    colours: dict
    """Pixel count per 0xRRGGBB code of colour masks."""
    colour_file: dict
    palettes: list
    """(path, (256, 3) palette, used indexes) of each palette PNG."""
    grey_files: list
    colour_files: list
    jpeg: bool
    dtype_max: int
    surveyed: int
    total: int
    value_masks: dict = dataclasses.field(default_factory=dict)
    """Value (grey masks) or ("colour", code) -> the first STRAY_MASKS + 1 masks holding it."""

    @property
    def values(self):
        return np.flatnonzero(self.histogram)


def _file_facts(path):
    try:
        array, palette = read_array(path, "mask", keep_palette=True)
    except ReadError:
        return None
    mask = mask_array(array)
    if mask.ndim == 3:
        codes = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1].astype(np.int64) << 8) | mask[..., 2]
        counts = pd.Series(codes.ravel()).value_counts()
        return path, "colour", dict(zip(counts.index.tolist(), counts.tolist())), palette, mask.dtype
    if not np.issubdtype(mask.dtype, np.integer):
        if not np.all(np.mod(mask, 1) == 0):
            raise ReadError(f"{path}: mask holds fractional values (float {mask.dtype}); masks must hold class "
                            f"indexes (integers)")
        mask = mask.astype(np.int64)
    if mask.min() < 0 or mask.max() > 65535:
        raise ReadError(f"{path}: mask values {mask.min()}..{mask.max()} outside 0..65535; masks must hold class "
                        f"indexes")
    histogram = np.bincount(mask.ravel().astype(np.int64), minlength=256)
    return path, "grey", histogram, palette, mask.dtype


def _note_mask(table, key, path):
    found = table.setdefault(key, [])
    if len(found) <= STRAY_MASKS:
        found.append(path)


def survey_masks(paths, workers=4):
    """Read the masks (an even sample beyond SURVEY_LIMIT) and collect their values; see MaskSurvey."""
    paths = [str(p) for p in paths]
    chosen = paths if len(paths) <= SURVEY_LIMIT else [paths[i] for i in
                                                       np.linspace(0, len(paths) - 1, SURVEY_LIMIT).astype(int)]
    histogram = np.zeros(256, np.int64)
    survey = MaskSurvey(histogram, {}, {}, {}, [], [], [], False, 255, len(chosen), len(paths))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for facts in pool.map(_file_facts, chosen):
            if facts is None:
                continue
            path, kind, counts, palette, dtype = facts
            survey.jpeg |= pathlib.Path(path).suffix.lower() in JPEG_SUFFIXES
            if np.issubdtype(dtype, np.integer) and np.iinfo(dtype).max > 255:
                survey.dtype_max = max(survey.dtype_max, int(np.iinfo(dtype).max))
            if kind == "colour":
                survey.colour_files.append(path)
                for code, count in counts.items():
                    survey.colours[code] = survey.colours.get(code, 0) + count
                    survey.colour_file.setdefault(code, path)
                    _note_mask(survey.value_masks, ("colour", code), path)
                continue
            survey.grey_files.append(path)
            if len(counts) > len(survey.histogram):
                survey.histogram = np.pad(survey.histogram, (0, len(counts) - len(survey.histogram)))
            survey.histogram[: len(counts)] += counts
            for value in np.flatnonzero(counts):
                survey.value_file.setdefault(int(value), path)
                _note_mask(survey.value_masks, int(value), path)
            if palette is not None:
                survey.palettes.append((path, palette, np.flatnonzero(counts)))
    if survey.surveyed and not survey.grey_files and not survey.colour_files:
        raise ReadError(f"{paths[0]}: no mask could be read (every surveyed mask is unreadable or corrupt)")
    return survey


def _values_text(values, limit=10):
    """Sorted values with runs of three or more shortened: "0..3, 15, 255"."""
    runs = []
    for value in map(int, values):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    parts = [f"{a}..{b}" if b - a >= 2 else ", ".join(map(str, range(a, b + 1))) for a, b in runs]
    return ", ".join(parts[:limit]) + (f", ... ({len(values)} values)" if len(parts) > limit else "")


def _colour_text(code):
    return f"({code >> 16},{(code >> 8) & 255},{code & 255})"


def _attr(facts, name):
    return getattr(facts, name, None) if facts is not None else None


def detect_encoding(config, mask_paths, facts=None, workers=4):
    """The MaskEncoding of a dataset's masks: the config's keys where set, else the layout's `facts`, else guessed.

    Args:
        config: the data section (mask, num_classes, palette, void, threshold, invert).
        mask_paths: every mask file.
        facts: optional object with class_names (list|None), palette (DataFrame index,name,r,g,b or None),
            void (int|None) and label_map ({file value: class index, 255 = void} or None) that a dataset
            layout knows; config keys that are set win.

    Raises:
        ReadError: one line naming a file, what is ambiguous or wrong, and the flag to set.
    """
    kind = config.get("mask") or "auto"
    if kind != "auto" and kind not in MASK_KINDS:
        raise ReadError(f"data.mask must be auto or one of {', '.join(MASK_KINDS)}, got {kind!r}")
    num_classes = config.get("num_classes")
    if num_classes is not None and int(num_classes) < 2:
        raise ReadError(f"data.num_classes: {num_classes} class cannot be trained: a softmax over one class always "
                        f"predicts it (mIoU 1.0 for nothing learnt); binary masks are 2 classes, background and "
                        f"foreground: leave data.num_classes unset or set it to 2")
    names = _attr(facts, "class_names")
    standard = _attr(facts, "standard")
    class_source = _attr(facts, "class_source") if names and not standard else None
    if num_classes is None and names and not standard and not config.get("class_names"):
        num_classes = len(names)
    palette, source = None, None
    if config.get("palette"):
        palette, source = read_palette(config["palette"]), "data.palette"
    elif _attr(facts, "palette") is not None:
        palette, source = _attr(facts, "palette"), class_source or "the layout's palette"
    void = config.get("void")
    void_source = "data.void" if void is not None else None
    if void is None and _attr(facts, "void") is not None:
        void, void_source = _attr(facts, "void"), "the layout"
    label_map = _attr(facts, "label_map")
    fixed_names = tuple(names) if names and not standard else None
    common = dict(invert=bool(config.get("invert", False)), class_names=fixed_names)
    survey = survey_masks(mask_paths, workers)
    sampled = f"; {survey.surveyed} of {survey.total} masks surveyed" if survey.surveyed < survey.total else ""

    colour_palette = palette is not None and kind == "auto" and _grey_palette_colours(survey, palette)
    if kind == "rgb" or (kind == "auto" and (config.get("palette") or survey.colour_files)) or colour_palette:
        encoding = _rgb_encoding(survey, palette, source, void, num_classes, common)
    elif kind == "binary":
        encoding = _binary_encoding(survey, config, void, common, "data.mask: binary; ")
    elif label_map and kind in ("auto", "index"):
        encoding = _mapped_encoding(survey, label_map, num_classes, common)
    else:
        encoding = _grey_encoding(survey, kind, config, void, void_source, num_classes, common)
    if palette is not None and encoding.colours is None:
        encoding = dataclasses.replace(encoding, colours=_palette_colours(palette, encoding.void,
                                                                          encoding.num_classes))
    if class_source and config.get("num_classes") is None:
        _check_classes(survey, encoding, class_source)
        reason = encoding.reason if class_source in encoding.reason else f"{encoding.reason}; {class_source}"
        reason += _unused_text(survey, encoding)
        encoding = dataclasses.replace(encoding, class_source=class_source, reason=reason)
    elif standard and config.get("num_classes") is None and encoding.kind != "binary":
        encoding = _fit_standard(encoding, standard, names)
    return dataclasses.replace(encoding, reason=encoding.reason + sampled) if sampled else encoding


def _grey_palette_colours(survey, palette):
    """True where single-channel masks hold the grey colours of a class palette, not class indexes: every value
    v is the colour (v, v, v) of a palette row and some value is beyond the class indexes."""
    values = [int(v) for v in survey.values]
    if survey.colour_files or survey.palettes or not values:
        return False
    greys = {int(r) for r, g, b in zip(palette["r"], palette["g"], palette["b"]) if r == g == b}
    return set(values) <= greys and max(values) >= len(palette)


def _check_classes(survey, encoding, class_source):
    """Refuse mask values beyond the classes a label file gives, once, naming a mask and the file."""
    if encoding.kind != "index" or encoding.label_map or encoding.levels:
        return
    beyond = [int(v) for v in survey.values if v >= encoding.num_classes and v != encoding.void]
    if beyond:
        raise ReadError(f"{survey.value_file[beyond[0]]}: mask values {_values_text(beyond)} are not among the "
                        f"{class_source}, classes 0..{encoding.num_classes - 1}"
                        + (f" and void {encoding.void}" if encoding.void is not None else "")
                        + "; add them to that file, or give --set data.void=V where V marks pixels to ignore")


def _unused_text(survey, encoding):
    """"; 2 of them in no mask: cat, dog" for the classes a label file lists that no surveyed mask holds."""
    if encoding.kind == "rgb":
        index_of = dict(zip(_palette_codes(encoding.palette), encoding.palette["index"].tolist()))
        grey = {} if survey.palettes else {(int(v) << 16) | (int(v) << 8) | int(v): 0 for v in survey.values}
        used = {index_of.get(code) for code in {**grey, **survey.colours}}
    elif encoding.kind == "index" and not encoding.levels:
        values = [int(v) for v in survey.values]
        used = {int(encoding.label_map[v]) for v in values if v in encoding.label_map} if encoding.label_map \
            else set(values)
    else:
        return ""
    unused = [i for i in range(encoding.num_classes) if i not in used]
    if not unused:
        return ""
    names = encoding.class_names or [f"class_{i}" for i in range(encoding.num_classes)]
    shown = ", ".join(str(names[i]) for i in unused[:5]) + (", ..." if len(unused) > 5 else "")
    return f"; {len(unused)} of them in no{' surveyed' if survey.surveyed < survey.total else ''} mask: {shown}"


def _fit_standard(encoding, standard, names):
    """Say how the masks' classes fit a benchmark's list, e.g. "PASCAL VOC's 21 classes"; names from it, with
    `class_<i>` beyond."""
    title, size = standard
    count = encoding.num_classes
    if count == size:
        text = f"{title}'s {size} classes"
    elif count < size:
        text = f"classes 0..{count - 1} of {title}'s {size} (no mask uses a higher one)"
    else:
        text = f"{count} classes: {title}'s {size} and {count - size} more"
    named = None
    if names:
        named = tuple(list(names)[:count] + [f"class_{i}" for i in range(len(names), count)])
    return dataclasses.replace(encoding, reason=f"{encoding.reason}; {text}", class_names=named)


def _palette_colours(palette, void, num_classes):
    rows = palette[palette["index"] != (void if void is not None else IGNORE_INDEX)]
    colours = rows.sort_values("index")[["r", "g", "b"]].to_numpy().astype(np.uint8)[:num_classes]
    return colours if len(colours) == num_classes else None


def _rgb_encoding(survey, palette, source, void, num_classes, common):
    grey = {(int(v) << 16) | (int(v) << 8) | int(v): survey.value_file[int(v)] for v in survey.values}
    if palette is not None:
        indexes = palette["index"].tolist()
        if void is None and IGNORE_INDEX in indexes:
            void, why = IGNORE_INDEX, f"colours of {source}, row 255: void"
        else:
            why = f"colours of {source}"
        classes = len([i for i in indexes if i != void])
        if source != "data.palette":
            _check_colours(survey, {**({} if survey.palettes else grey), **survey.colour_file}, palette, source)
        return MaskEncoding("rgb", int(num_classes or classes), void=void, palette=palette, reason=why, **common)
    colours = {**grey, **survey.colour_file}
    voc = voc_colormap()
    voc_codes = {(int(r) << 16) | (int(g) << 8) | int(b): i for i, (r, g, b) in enumerate(voc)}
    unknown = [code for code in colours if code not in voc_codes]
    example = survey.colour_files[0] if survey.colour_files else next(iter(colours.values()), "masks")
    if unknown:
        if len(colours) > MAX_COLOURS:
            raise ReadError(f"{example}: {len(colours)} distinct colours: a photo or a JPEG-compressed colour mask, "
                            f"not a class mask; check data.masks_dir, or save colour masks as PNG")
        listed = ", ".join(_colour_text(c) for c in sorted(unknown)[:8])
        raise ReadError(f"{colours[unknown[0]]}: RGB colour mask with {len(unknown)} colour(s) outside the VOC colour "
                        f"map ({listed}{', ...' if len(unknown) > 8 else ''}): set --mask rgb --set "
                        f"data.palette=PALETTE.csv (columns name,r,g,b, one row per class colour; index 255 = void)")
    used = sorted(voc_codes[c] for c in colours)
    classes = [i for i in used if i != VOC_VOID_INDEX]
    if num_classes is None:
        codes = {voc_codes[c]: c for c in colours}
        _refuse_strays(classes, lambda i: survey.colours.get(codes[i], 0) or survey.histogram[codes[i] & 255],
                       lambda i: survey.value_masks.get(("colour", codes[i])) or survey.value_masks.get(codes[i] & 255),
                       lambda i: f"colour {_colour_text(codes[i])} (VOC index {i})")
    count = int(num_classes or (max(classes) + 1 if classes else 1))
    if count < 2:
        raise ReadError(f"{example}: the colour masks hold one class only ({_colour_text(next(iter(colours)))}): "
                        f"nothing to segment; check data.masks_dir")
    table = pd.DataFrame([{"index": i, "name": f"class_{i}", "r": int(voc[i][0]), "g": int(voc[i][1]),
                           "b": int(voc[i][2])} for i in [*range(count), VOC_VOID_INDEX]])
    void = VOC_VOID_INDEX if void is None else void
    why = f"RGB colours of the VOC colour map: indexes {_values_text(classes)}"
    why += ", (224,224,192) void" if VOC_VOID_INDEX in used else ""
    return MaskEncoding("rgb", count, void=void, palette=table, reason=why,
                        colours=voc[:count].copy(), **common)


def _palette_codes(palette):
    """The 0xRRGGBB code of each palette row."""
    rgb = palette[["r", "g", "b"]].to_numpy().astype(np.int64)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).tolist()


def _check_colours(survey, colours, palette, source):
    """Refuse colours that no palette row has, once, naming a mask that holds them."""
    known = set(_palette_codes(palette))
    unknown = sorted(code for code in colours if code not in known)
    if not unknown:
        return
    if len(colours) > MAX_COLOURS:
        raise ReadError(f"{colours[unknown[0]]}: {len(colours)} distinct colours: a photo or a JPEG-compressed colour "
                        f"mask, not a class mask; check data.masks_dir, or save colour masks as PNG")
    listed = ", ".join(_colour_text(c) for c in unknown[:8]) + (", ..." if len(unknown) > 8 else "")
    raise ReadError(f"{colours[unknown[0]]}: {len(unknown)} mask colour(s) not in the {source}: {listed}; add them "
                    f"there (or fix the masks)")


def _refuse_strays(classes, pixels_of, masks_of, what=str, void_hint=False):
    """Refuse top classes that look like stray values: in at most STRAY_MASKS masks and STRAY_SHARE of the pixels,
    with a class no mask uses between them and the others (they would be trained as near-empty classes)."""
    rest, strays = list(classes), []
    total = sum(int(pixels_of(c)) for c in classes)
    while len(rest) >= 3 and rest[-1] - rest[-2] >= 2 and len(masks_of(rest[-1]) or ()) <= STRAY_MASKS \
            and pixels_of(rest[-1]) <= STRAY_SHARE * total:
        strays.append(rest.pop())
    if not strays:
        return
    top = strays[0]
    masks = sorted({m for c in strays for m in masks_of(c)})
    pixels = sum(int(pixels_of(c)) for c in strays)
    raise ReadError(f"{masks[0]}: {', '.join(what(c) for c in reversed(strays))} in only {pixels} pixel(s) of "
                    f"{len(masks)} mask(s) ({', '.join(pathlib.Path(m).name for m in masks)}), far above the other "
                    f"classes {_values_text(rest)}: a stray value? it would add {top - rest[-1]} class(es) that hold "
                    f"nothing else. Fix those masks, give --set data.num_classes={top + 1} to train them as classes"
                    + (f", or --set data.void={top} to ignore those pixels" if void_hint and len(strays) == 1 else ""))


def _two_values(values):
    """(threshold, text) when `values` are binary 0/1, 0/255, 0/65535 or 0 and one value >= 128, else None."""
    if len(values) != 2 or values[0] != 0:
        return None
    high = int(values[1])
    if high == 1:
        return 0, "values 0/1: binary, threshold 0"
    if high >= 128:
        return high // 2, f"values 0/{high}: binary"
    return None


def _near_binary(survey):
    """Threshold and text for lossy (JPEG) or interpolated binary masks: almost every pixel near 0 or the top."""
    top = 255 if survey.dtype_max <= 255 else survey.dtype_max
    histogram = np.pad(survey.histogram, (0, max(0, top + 1 - len(survey.histogram))))
    total = histogram.sum()
    if not total:
        return None
    low, high = histogram[: top // 32 + 1].sum(), histogram[top - top // 32:].sum()
    near = histogram[: top // 4 + 1].sum() + histogram[top - top // 4:].sum()
    middle = np.count_nonzero(histogram[top // 4 + 1: top - top // 4])
    if min(low, high) < 0.001 * total or (low + high) < 0.9 * total or near < 0.97 * total:
        return None
    if not survey.jpeg and middle < 8:
        return None
    share = 100 * near / total
    origin = "JPEG masks" if survey.jpeg else "masks with interpolated edges"
    return top // 2, f"{origin} with {share:.1f}% of pixels near 0 or {top}: binary, threshold {top // 2}"


def _grey_levels(survey):
    """(levels, text) for lossy masks of a few well-separated grey levels (JPEG-saved 0/128/255 masks): at most
    MAX_LEVELS peaks, each holding 0.5% of the pixels or more and 24 values or more from the next, with
    LEVEL_SHARE of the pixels near one of them; None otherwise."""
    histogram = survey.histogram
    if survey.dtype_max > 255 or len(histogram) > 256:
        return None
    total = int(histogram.sum())
    levels = []
    for value in np.argsort(histogram, kind="stable")[::-1]:
        if histogram[value] < 0.005 * total:
            break
        if all(abs(int(value) - level) >= 24 for level in levels):
            levels.append(int(value))
        if len(levels) > MAX_LEVELS:
            return None
    levels.sort()
    if len(levels) < 2:
        return None
    radius = max(4, min(b - a for a, b in zip(levels, levels[1:])) // 4)
    near = sum(int(histogram[max(0, level - radius): level + radius + 1].sum()) for level in levels)
    if near < LEVEL_SHARE * total:
        return None
    share = 100 * near / total
    return tuple(levels), (f"JPEG masks of {len(levels)} grey levels {', '.join(map(str, levels))} ({share:.1f}% of "
                           f"pixels within {radius} of one; compression noise snapped to the nearest level): "
                           f"classes 0..{len(levels) - 1} in level order")


def _binary_encoding(survey, config, void, common, prefix=""):
    values = survey.values
    threshold, why = config.get("threshold"), None
    if void is None and len(values) == 3 and list(values) == [0, 1, 255]:
        void = 255
    plain = [v for v in values if v != void]
    if threshold is None:
        found = _two_values(np.array(plain)) or _near_binary(survey)
        if found is None and len(plain) == 2:
            found = (plain[0] + plain[1]) // 2, f"values {plain[0]}/{plain[1]}: binary, threshold " \
                                                f"{(plain[0] + plain[1]) // 2}"
        threshold, why = found if found else (127, f"values {_values_text(plain)}: binary, threshold 127")
    else:
        why = f"values {_values_text(plain)}: binary, threshold {threshold} (data.threshold)"
    if config.get("num_classes") not in (None, 2):
        raise ReadError(f"data.num_classes: binary masks are 2 classes (background, foreground), got "
                        f"{config['num_classes']}; leave it unset")
    if void is not None:
        why += f", {void} void"
    return MaskEncoding("binary", 2, void=void, threshold=int(threshold), reason=prefix + why, **common)


def _mapped_encoding(survey, label_map, num_classes, common):
    unknown = [int(v) for v in survey.values if int(v) not in {int(k) for k in label_map}]
    if unknown:
        raise ReadError(f"{survey.value_file[unknown[0]]}: mask values {_values_text(unknown)} are not in the "
                        f"layout's label map; check the layout (--layout) or set --mask index")
    used = sorted({int(label_map[int(v)]) for v in survey.values} - {IGNORE_INDEX})
    if not used:
        raise ReadError(f"{survey.value_file[int(survey.values[0])]}: every mask pixel is void after the layout's "
                        f"label map: nothing to train on; check the layout (--layout) or data.reduce_zero_label")
    count = int(num_classes or (max(used) + 1))
    why = (f"file values {_values_text([int(v) for v in survey.values])} mapped by the layout's label map to classes "
           f"{_values_text(used)}, others void")
    return MaskEncoding("index", count, void=IGNORE_INDEX, label_map=dict(label_map), reason=why, **common)


def _check_palettes(survey):
    """The shared palette of palette PNGs; refuse files whose used indexes have other colours."""
    first_path, first, _ = survey.palettes[0]
    for path, palette, used in survey.palettes[1:]:
        differs = [int(i) for i in used if not np.array_equal(palette[i], first[i])]
        if differs:
            index = differs[0]
            raise ReadError(f"{path}: palette PNG whose index {index} is {tuple(map(int, palette[index]))} but "
                            f"{tuple(map(int, first[index]))} in {first_path}: the indexes do not mean the same class "
                            f"in every file; set --mask rgb --set data.palette=PALETTE.csv to decode by colour")
    return first


def _grey_encoding(survey, kind, config, void, void_source, num_classes, common):
    values = [int(v) for v in survey.values]
    if not values:
        raise ReadError("masks: no readable mask to detect the encoding from; run python -m app.check_data")
    is_palette = bool(survey.palettes) and len(survey.palettes) == len(survey.grey_files)
    example = survey.value_file[values[-1]]
    if kind == "auto" and not is_palette and void is None:
        found = _two_values(np.array(values)) or _near_binary(survey)
        if found is not None and num_classes in (None, 2):
            return _binary_encoding(survey, config, None, common)
        levels = _grey_levels(survey) if survey.jpeg else None
        if levels is not None:
            levels, why = levels
            return MaskEncoding("index", int(num_classes or len(levels)), levels=levels, reason=why, **common)
        if survey.jpeg:
            raise ReadError(f"{example}: JPEG masks with values {_values_text(values)} that are not near-binary: "
                            f"lossy JPEG changes class indexes at every edge; save the masks as PNG (or set "
                            f"--mask binary if they are binary)")
    if void is None:
        for candidate in (IGNORE_INDEX, 65535):
            if candidate in values and len([v for v in values if v not in (0, candidate)]) >= 1:
                void, void_source = candidate, "inferred"
                break
    classes = [v for v in values if v != void]
    if not classes:
        raise ReadError(f"{example}: every mask pixel is void ({void}): nothing to train on; check data.masks_dir")
    top = max(classes)
    if num_classes is None:
        _refuse_strays(classes, lambda v: survey.histogram[v], lambda v: survey.value_masks.get(v, ()),
                       lambda v: f"mask value {v}", void_hint=True)
    if kind == "auto" and num_classes is None:
        if len(classes) == 1:
            raise ReadError(f"{example}: every mask holds the single value {classes[0]}"
                            + (f" (and void {void})" if void is not None else "")
                            + ": nothing to segment; check data.masks_dir, or set --mask binary if it is foreground")
        if len(classes) == 2 and classes[0] == 0 and void is None:
            raise ReadError(f"{survey.value_file[top]}: mask values 0 and {top} only: binary masks with foreground "
                            f"{top}, or index masks whose classes 1..{top - 1} never occur? set --mask binary "
                            f"(or --mask index)")
        if top > 2 * len(classes) + 10:
            raise ReadError(f"{survey.value_file[top]}: mask values {_values_text(values)} are neither class indexes "
                            f"0..N-1 ({top + 1 - len(classes)} of {top + 1} classes would never occur) nor two-valued "
                            f"binary: set --mask index to train {top + 1} classes as they are, or --mask binary, or "
                            f"re-encode the masks as 0..N-1")
    count = int(num_classes or top + 1)
    if count < 2:
        raise ReadError(f"{example}: every mask holds class 0 only"
                        + (f" (and void {void})" if void is not None else "") + ": nothing to segment; check "
                        "data.masks_dir")
    if count >= IGNORE_INDEX and values == [0, IGNORE_INDEX]:
        raise ReadError(f"{example}: mask values 0 and 255 are binary masks, not class indexes: set --mask binary")
    if count >= IGNORE_INDEX:
        raise ReadError(f"{survey.value_file[top]}: mask values up to {top} ({len(classes)} distinct): more than "
                        f"{IGNORE_INDEX - 1} classes, or instance ids rather than class indexes; semantic masks need "
                        f"class indexes 0..{IGNORE_INDEX - 2}" + ("" if void is not None else
                                                               "; set --set data.void=V if V marks void pixels"))
    described = f"values {_values_text(classes)}" + (f" and {void}" if void in values else "")
    if is_palette:
        why = f"palette PNG: indexes {_values_text(classes)}"
    elif kind == "index":
        why = f"data.mask: index; {described}"
    else:
        why = f"{described}: index masks"
    if void is not None:
        why += f", {void} void" + (" (inferred)" if void_source == "inferred" and not is_palette else "")
        why += f" ({void_source})" if void_source not in (None, "inferred") else ""
    colours = _check_palettes(survey)[:count].copy() if is_palette else None
    return MaskEncoding("index", count, void=void, reason=why, colours=colours, **common)
