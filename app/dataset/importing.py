"""Convert LabelMe and COCO annotations into class-index PNG masks plus a palette CSV (`import_annotations`).

Reading, class mapping and drawing are `data.annotations` (see its rules); this module writes the masks: nothing
is written before every annotation has been read and every label has a class, files go through temporary names,
and the output folder must lie outside the annotations' folder.
"""
import pathlib

from app.runtime.outputs import check_output_folder, output_dir, prepare_output_folder, write_image, write_text
from data.annotations import palette_table, read_annotations, rendered


def import_annotations(kind, source, out, classes=None, class_map=None, warn=print, overwrite=False):
    """Convert annotations under `source` into `out/masks/<stem>.png` and `out/palette.csv`.

    Args:
        kind, source, classes, class_map, warn: as `data.annotations.read_annotations`.
        out: path. Output folder.
        overwrite: bool. Replace masks and palette.csv already in `out`. `out` must lie outside `source`'s folder.

    Returns:
        (ClassMap, list of written mask paths).
    """
    out = pathlib.Path(out)
    if pathlib.Path(source).exists():
        check_output_folder(out, [source])
    mapping, items = read_annotations(kind, source, classes, class_map, warn)
    prepare_output_folder(out, [source], [out / "palette.csv", *(out / "masks" / f"{item.stem}.png" for item in items)],
                          overwrite)
    masks = output_dir(out / "masks")
    written = [write_image(masks / f"{item.stem}.png", mask) for item, mask in rendered(items, mapping)]
    write_text(out / "palette.csv", palette_table(mapping).to_csv(index=False))
    return mapping, written
