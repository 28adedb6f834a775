"""Label files that labelling tools export beside the masks: class names, the mask value of each class and
(where the tool writes them) class colours.

- CVAT "Segmentation mask 1.1" / Datumaro VOC `labelmap.txt`: `# label:color_rgb:parts:actions`, then
  `name:r,g,b::` per class; `background` is class 0, black, when the file does not list it.
- labelme2voc `class_names.txt`: one name per line from `_background_` (0); `__ignore__` (-1 in labelme, 255 in
  its PNGs) is void.
- Hasty / CloudFactory `label_classes.json`: `[{"png_index", "class_name", "color": "#RRGGBBAA"}, ...]`, 0 being
  the background where no class has it.
- Roboflow semantic masks `_classes.csv`: columns `Pixel Value, Class`.
- ADE20K `objectInfo150.csv` (tab-separated; also `objectInfo150.txt`, CSAIL's comma-separated
  `object150_info.csv`): columns `Idx, Ratio, Train, Val, Name` (Name `a, b` or `a;b`: synonyms), class k at mask
  value k and 0 "other".
- `classes.txt`, `labels.txt`, `class_names.txt`: one name per line (or `value name` lines), in value order.

Every reader returns a `LabelFile`; `find_label_file` looks for them in the folders a dataset's masks lie in.
"""
import dataclasses
import json
import pathlib
import re

import numpy as np
import pandas as pd

from data.colormaps import voc_colormap
from data.masks import IGNORE_INDEX

IGNORE_NAMES = ("__ignore__", "_ignore_")
"""Names of void in labelme's class lists (-1 in its label arrays, 255 in its PNGs)."""
BACKGROUND_NAMES = ("_background_", "__background__", "background")


class LabelFileError(ValueError):
    """A label file that names itself by its name (labelmap.txt, ...) but cannot be read as one."""


@dataclasses.dataclass
class LabelFile:
    """What a label file says.

    Attributes:
        path: the file.
        tool: who writes it, for messages ("CVAT").
        names: class names by mask value 0..N-1 (values no class has are named `class_<i>`).
        colours: (N, 3) class colours the masks are drawn in, or None.
        void: mask value of void pixels the file names (labelme's `__ignore__` is 255), or None.
        first_value: the mask value of names[0] as the file numbers them (1 for ADE20K, where 0 is "other").
    """

    path: pathlib.Path
    tool: str
    names: list
    colours: np.ndarray | None = None
    void: int | None = None
    first_value: int = 0

    def palette(self):
        """Palette DataFrame (index, name, r, g, b) of the classes, or None without colours."""
        if self.colours is None:
            return None
        colours = np.asarray(self.colours, int)
        return pd.DataFrame({"index": range(len(self.names)), "name": self.names, "r": colours[:, 0],
                             "g": colours[:, 1], "b": colours[:, 2]})


def _by_value(values_names, path):
    """Names in value order from (value, name) pairs; gaps get `class_<i>`, a missing 0 is "background"."""
    table = {}
    for value, name in values_names:
        if value in table:
            raise LabelFileError(f"{path}: value {value} is given twice ({table[value]}, {name})")
        table[value] = name
    if not table:
        raise LabelFileError(f"{path}: no classes listed")
    if min(table) < 0 or max(table) >= IGNORE_INDEX:
        raise LabelFileError(f"{path}: class values must be 0..{IGNORE_INDEX - 1}, got {min(table)}..{max(table)}")
    names = [table.get(value, "background" if value == 0 else f"class_{value}") for value in range(max(table) + 1)]
    return [_clean_name(n) for n in names]


def _clean_name(name):
    name = str(name).strip()
    return "background" if name.lower() in BACKGROUND_NAMES else name


def _text_lines(path):
    return [line.strip() for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines()]


def read_cvat_labelmap(path):
    """CVAT / Datumaro VOC `labelmap.txt`; a file without colours gets the VOC colour map (as Datumaro does)."""
    names, colours = [], []
    for number, line in enumerate(_text_lines(path), start=1):
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 2 or not parts[0].strip():
            raise LabelFileError(f"{path}:{number}: expected name:r,g,b:parts:actions, got {line!r}")
        colour = parts[1].strip()
        if colour:
            try:
                rgb = tuple(int(c) for c in colour.split(","))
            except ValueError:
                rgb = ()
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise LabelFileError(f"{path}:{number}: colour {colour!r} is not r,g,b (0..255 each)")
            colours.append(rgb)
        else:
            colours.append(None)
        names.append(parts[0].strip())
    if not names:
        raise LabelFileError(f"{path}: no labels listed (lines name:r,g,b::)")
    if len(set(names)) < len(names):
        raise LabelFileError(f"{path}: a label is listed twice")
    if "background" in names:
        at = names.index("background")
        names.insert(0, names.pop(at))
        colours.insert(0, colours.pop(at))
    else:
        names.insert(0, "background")
        colours.insert(0, (0, 0, 0) if any(c is not None for c in colours) else None)
    if all(c is None for c in colours):
        table = voc_colormap(len(names))
    elif any(c is None for c in colours):
        raise LabelFileError(f"{path}: some labels have a colour and some not; give every label r,g,b")
    else:
        table = np.array(colours, np.uint8)
    if len({tuple(c) for c in table.tolist()}) < len(names):
        raise LabelFileError(f"{path}: two labels share a colour, so the masks cannot tell them apart")
    return LabelFile(path, "CVAT", names, table)


def read_name_list(path, tool="class list"):
    """One name per line in value order, or `value name` / `value: name` / `value,name` lines; labelme's
    `__ignore__` marks void (255)."""
    lines = [line for line in _text_lines(path) if line and not line.startswith("#")]
    numbered = [re.fullmatch(r"(\d+)\s*[:,\s]\s*(.+)", line) for line in lines]
    void = None
    if lines and all(numbered):
        pairs = [(int(m.group(1)), m.group(2).strip()) for m in numbered]
    else:
        pairs, value = [], 0
        for line in lines:
            if line.lower() in IGNORE_NAMES:
                void = IGNORE_INDEX
                continue
            pairs.append((value, line))
            value += 1
    ignored = [v for v, n in pairs if n.lower() in IGNORE_NAMES]
    if ignored:
        void = ignored[0]
    pairs = [(v, n) for v, n in pairs if v not in ignored]
    return LabelFile(path, tool, _by_value(pairs, path), void=void)


def read_hasty_classes(path):
    """Hasty / CloudFactory `label_classes.json`."""
    try:
        records = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as err:
        raise LabelFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("png_index"), int)
                                                and "class_name" in r for r in records):
        raise LabelFileError(f"{path}: expected a list of {{\"png_index\": int, \"class_name\": str, ...}}")
    names = _by_value([(r["png_index"], r["class_name"]) for r in records], path)
    colours = None
    hex_colours = {r["png_index"]: str(r.get("color", "")) for r in records}
    if all(re.fullmatch(r"#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?", c) for c in hex_colours.values()):
        colours = np.array([[int(hex_colours[v][i:i + 2], 16) for i in (1, 3, 5)] if v in hex_colours else
                            [0, 0, 0] for v in range(len(names))], np.uint8)
        if len({tuple(c) for c in colours.tolist()}) < len(names):
            colours = None
    return LabelFile(path, "Hasty", names, colours)


def _read_csv(path):
    """A CSV (or, where the header holds a tab, a tab-separated file) with lower-case column names."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            separator = "\t" if "\t" in file.readline() else ","
        table = pd.read_csv(path, sep=separator, skipinitialspace=True, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise LabelFileError(f"{path}: not a readable CSV ({err})") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    return table


def read_roboflow_classes(path):
    """Roboflow semantic segmentation `_classes.csv` (`Pixel Value, Class`)."""
    table = _read_csv(path)
    if not {"pixel value", "class"} <= set(table.columns):
        raise LabelFileError(f"{path}: expected columns 'Pixel Value, Class', got {', '.join(table.columns)}")
    try:
        pairs = [(int(v), str(n)) for v, n in zip(table["pixel value"], table["class"])]
    except ValueError:
        raise LabelFileError(f"{path}: 'Pixel Value' must hold integers") from None
    return LabelFile(path, "Roboflow", _by_value(pairs, path))


def read_ade_object_info(path):
    """ADE20K `objectInfo150.csv` (tab-separated in ADEChallengeData2016, names `building, edifice`) or the
    comma-separated `object150_info.csv` of CSAIL's code (names `building;edifice`): class Idx (1..150) named by
    the first of its synonyms."""
    table = _read_csv(path)
    if not {"idx", "name"} <= set(table.columns):
        raise LabelFileError(f"{path}: expected columns Idx,...,Name, got {', '.join(table.columns)}")
    try:
        pairs = [(int(v) - 1, re.split(r"[;,]", str(n))[0]) for v, n in zip(table["idx"], table["name"])]
    except ValueError:
        raise LabelFileError(f"{path}: 'Idx' must hold integers") from None
    return LabelFile(path, "ADE20K", _by_value(pairs, path), first_value=1)


TOOL_FILES = {"labelmap.txt": read_cvat_labelmap, "label_classes.json": read_hasty_classes,
              "_classes.csv": read_roboflow_classes, "objectinfo150.csv": read_ade_object_info,
              "objectinfo150.txt": read_ade_object_info, "object150_info.csv": read_ade_object_info,
              "class_names.txt": lambda p: read_name_list(p, "labelme2voc")}
"""File name (lower case) -> reader of the files whose name says which tool wrote them."""
PLAIN_FILES = ("classes.txt", "labels.txt")
"""One name per line; a file that is not a name list is left alone (with a note)."""


def read_label_file(path):
    """The LabelFile of `path` (a name of TOOL_FILES or PLAIN_FILES).

    Raises:
        LabelFileError: naming the file and what is wrong.
    """
    path = pathlib.Path(path)
    reader = TOOL_FILES.get(path.name.lower())
    if reader is not None:
        return reader(path)
    return read_name_list(path)


def _candidates(folder):
    if not folder.is_dir():
        return []
    files = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    return [files[name] for name in (*TOOL_FILES, *PLAIN_FILES) if name in files]


def find_label_file(folders, problems, notes):
    """The first label file found in `folders` (in order), read; None where there is none.

    Files named by a tool that cannot be read are `problems`; a plain list that is not one is a note. Label
    files of the same name in several folders (Roboflow's train/ valid/ test/) must agree.
    """
    for folder in dict.fromkeys(folders):
        for path in _candidates(folder):
            try:
                found = read_label_file(path)
            except (LabelFileError, OSError) as err:
                if path.name.lower() in TOOL_FILES:
                    problems.append(f"{err}; fix the file or remove it")
                    return None
                notes.append(f"{err}; not used as class names")
                continue
            for other in (f / path.name for f in folders if f != folder and (f / path.name).is_file()):
                try:
                    same = read_label_file(other).names == found.names
                except (LabelFileError, OSError):
                    same = False
                if not same:
                    problems.append(f"{other}: lists other classes than {path}; keep one class list for every "
                                    f"split")
                    return None
            return found
    return None


def label_folders(root, mask_paths, limit=50):
    """Folders a label file may lie in: the dataset folder, then each mask folder and the folder above it
    (inside the dataset folder), in order."""
    root = pathlib.Path(root)
    base = root if root.is_dir() else root.parent
    folders = [base]
    for parent in dict.fromkeys(pathlib.Path(p).parent for p in mask_paths):
        for folder in (parent, parent.parent):
            if folder == base or base in folder.parents:
                folders.append(folder)
        if len(folders) > limit:
            break
    return list(dict.fromkeys(folders))


def apply_label_file(root, source, problems):
    """Give `source` the classes of the label file found beside its masks (where the layout did not take its
    classes from a file already): names, class count, colours and void; the detection line says which file."""
    if source is None or source.class_source or (source.class_names and not source.standard):
        return
    label = find_label_file(label_folders(root, source.frame["mask"]), problems, source.notes)
    if label is None:
        return
    names = list(label.names)
    if len(names) == 1 and names[0] != "background":
        names.insert(0, "background")  # one class named: the foreground of binary masks
    if label.first_value and not source.label_map:
        names = ["other"] * label.first_value + names
    base = root if pathlib.Path(root).is_dir() else pathlib.Path(root).parent
    shown = label.path.relative_to(base) if base in label.path.parents else label.path
    source.class_names, source.palette, source.standard = names, label.palette(), None
    if label.void is not None or label.colours is not None:
        source.void = label.void
    source.class_source = f"{len(names)} classes from {shown.as_posix()} ({label.tool})"
