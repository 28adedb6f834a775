import pandas as pd
import pytest

from data.discovery import DatasetError, discover
from data.synthetic import write_shapes_dataset


@pytest.mark.parametrize("layout", ["paired", "segnet", "csv"])
def test_each_layout_finds_every_pair(tmp_path, layout):
    write_shapes_dataset(tmp_path, count=8, layout=layout)
    path = tmp_path / "index.csv" if layout == "csv" else tmp_path
    frame = discover(path, val_fraction=0.25, seed=1)
    assert len(frame) == 8
    assert frame["split"].value_counts().to_dict() == {"train": 6, "val": 2}
    for image, mask in zip(frame["image"], frame["mask"]):
        assert pd.notna(image) and pd.notna(mask)


def test_seeded_split_is_reproducible_and_seed_dependent(tmp_path):
    write_shapes_dataset(tmp_path, count=20)
    first = discover(tmp_path, val_fraction=0.2, seed=3)
    again = discover(tmp_path, val_fraction=0.2, seed=3)
    other = discover(tmp_path, val_fraction=0.2, seed=4)
    assert (first["split"] == again["split"]).all()
    assert (first["split"] == "val").sum() == 4
    assert not (first["split"] == other["split"]).all()


def test_mixed_extensions_match_by_stem(tmp_path):
    write_shapes_dataset(tmp_path, count=3, extension=".jpg")
    frame = discover(tmp_path)
    assert sorted(p.rsplit(".", 1)[1] for p in frame["image"]) == ["jpg"] * 3


def test_unmatched_files_and_empty_folders_are_reported(tmp_path):
    write_shapes_dataset(tmp_path, count=3)
    (tmp_path / "masks" / "sample_000.png").unlink()
    (tmp_path / "masks" / "orphan.png").write_bytes(b"")
    with pytest.raises(DatasetError) as err:
        discover(tmp_path)
    lines = err.value.problems
    assert any("sample_000.png: image has no mask" in line for line in lines)
    assert any("orphan.png: mask has no image" in line for line in lines)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        discover(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nowhere")


def test_csv_rows_with_missing_files_and_bad_splits(tmp_path):
    write_shapes_dataset(tmp_path, count=2, layout="csv")
    csv = tmp_path / "index.csv"
    table = pd.read_csv(csv)
    table.loc[0, "image"] = "files/missing.png"
    table.loc[1, "split"] = "holdout"
    table.to_csv(csv, index=False)
    with pytest.raises(DatasetError) as err:
        discover(csv)
    assert any("index.csv:2: image file not found" in p for p in err.value.problems)
    assert any("index.csv:3: unknown split 'holdout'" in p for p in err.value.problems)
