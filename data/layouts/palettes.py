"""Class colour tables shipped with a dataset: `class_dict.csv` (name,r,g,b) beside RGB masks (CamVid from
Kaggle and similar exports)."""
from data.masks import ReadError, read_palette

PALETTE_FILES = ("class_dict.csv",)
VOID_NAMES = ("void", "unlabelled", "unlabeled", "ignore")
"""Palette row names that mark the void (ignored) value, as CamVid's `11,Void,0,0,0`."""


def root_palette(root):
    """(palette DataFrame or None, void index or None, class names or None, notes) from a palette file at the
    dataset's top level; a last row named as in VOID_NAMES is the void value, the other rows name the classes."""
    for name in PALETTE_FILES:
        path = root / name
        if path.is_file():
            try:
                palette = read_palette(path)
            except ReadError as err:
                return None, None, None, [f"{err}; not used"]
            void_rows = palette[palette["name"].astype(str).str.strip().str.lower().isin(VOID_NAMES)]
            last = int(palette["index"].max())
            void = last if len(void_rows) == 1 and int(void_rows["index"].iloc[0]) == last else None
            names = [str(n) for i, n in zip(palette["index"], palette["name"]) if i != void]
            said = f"; row {void} ({void_rows['name'].iloc[0]}) is void" if void is not None else ""
            return palette, void, names, [f"class names and colours from {path}{said}"]
    return None, None, None, []
