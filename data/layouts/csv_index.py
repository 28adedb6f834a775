"""CSV layout: a CSV file with columns image, mask and optionally split and instances (paths relative to it)."""
import pathlib

import pandas as pd

from data.layouts.base import SPLITS, DatasetSource, make_frame


def detect(root):
    return "a CSV file" if root.is_file() and root.suffix.lower() == ".csv" else None


def load(root, options, problems):
    rows = _read_csv(root, problems)
    split_source = "the CSV split column" if any(r["split"] for r in rows) else ""
    return DatasetSource(frame=make_frame(rows), layout="csv", reason=f"{root.name} (image,mask columns)",
                         split_source=split_source)


def _read_csv(csv_path, problems):
    try:
        table = pd.read_csv(csv_path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        problems.append(f"{csv_path}: not a readable CSV ({err})")
        return []
    missing = {"image", "mask"} - set(table.columns)
    if missing:
        problems.append(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}; need image,mask[,split]")
        return []
    base = csv_path.parent
    rows = []
    for line, record in enumerate(table.to_dict("records"), start=2):
        row = {}
        for key in ("image", "mask", "instances"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                row[key] = None
                continue
            file = pathlib.Path(value.strip())
            row[key] = str(file if file.is_absolute() else base / file)
            if not pathlib.Path(row[key]).is_file():
                problems.append(f"{csv_path}:{line}: {key} file not found: {row[key]}")
        if row["image"] is None or row["mask"] is None:
            problems.append(f"{csv_path}:{line}: row needs both an image and a mask path")
        split = record.get("split")
        if isinstance(split, str) and split.strip() and split.strip() not in SPLITS:
            problems.append(f"{csv_path}:{line}: unknown split {split!r}; use {', '.join(SPLITS)}")
        row["split"] = split.strip() if isinstance(split, str) and split.strip() else None
        rows.append(row)
    return rows
