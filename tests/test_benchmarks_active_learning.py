"""benchmarks/active_learning.py: every round trains on the same number of rows, the table and plot; --quick end
to end (slow)."""
import pandas as pd
import pytest

from benchmarks import active_learning


def test_every_round_lists_the_same_number_of_training_rows(tmp_path):
    images = active_learning.images()
    args = active_learning.parse_args([])
    assert args.epoch_rows == 72  # least common multiple of 6, 12, 18, 24 labelled images
    val = images[:16]
    for count in (6, 12, 18, 24):
        labelled = images[16:16 + count]
        table = pd.read_csv(active_learning.write_index(tmp_path, labelled, val, args.epoch_rows))
        train = table[table["split"] == "train"]
        assert len(train) == 72 and set(train["image"].value_counts()) == {72 // count}
        assert table[table["split"] == "val"]["image"].tolist() == [str(path) for path in val]
        assert set(train["image"]).isdisjoint(set(table[table["split"] == "val"]["image"]))
    with pytest.raises(SystemExit):
        active_learning.parse_args(["--start", "20", "--step", "10", "--rounds", "3"])


def test_table_and_plot(tmp_path):
    rows = [{"seed": seed, "arm": arm, "labelled": labelled, "miou": 0.5 + 0.01 * labelled + (arm == "ranked") * 0.02}
            for seed in (0, 1) for arm in active_learning.ARMS for labelled in (6, 12)]
    table = active_learning.summary(rows)
    assert table["ranked - random"].tolist() == pytest.approx([0.02, 0.02])
    active_learning.plot(rows, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "al"
    assert active_learning.main(["--quick", "--out", str(out), "--plot", str(tmp_path / "al.png"),
                                 "--runs-dir", str(tmp_path / "runs")]) == 0
    results = pd.read_csv(out.with_suffix(".csv"))
    assert sorted(results["labelled"].unique()) == [6, 12, 18]
    assert results.groupby("arm").size().to_dict() == {"random": 3, "ranked": 3}
    assert results["miou"].between(0, 1).all()
