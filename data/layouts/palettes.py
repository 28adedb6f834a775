"""Class colour tables shipped with a dataset: `class_dict.csv` (name,r,g,b) beside RGB masks (CamVid from
Kaggle and similar exports)."""
from data.masks import ReadError, read_palette

PALETTE_FILES = ("class_dict.csv",)


def root_palette(root):
    """(palette DataFrame or None, notes) from a palette file at the dataset's top level."""
    for name in PALETTE_FILES:
        path = root / name
        if path.is_file():
            try:
                return read_palette(path), [f"class colours from {path}"]
            except ReadError as err:
                return None, [f"{err}; not used"]
    return None, []
