"""benchmarks/transfer.py without training: the pretraining set leaves the embedded images out, the curves plot."""
import json

import pytest

from benchmarks import transfer


def test_pretraining_subset_leaves_out_the_embedded_images(tmp_path):
    source = tmp_path / "dsb"
    stems = [f"{index:016x}{'ab' * 24}" for index in range(6)]
    for sub in ("images", "masks"):
        (source / sub).mkdir(parents=True)
        for stem in stems:
            (source / sub / f"{stem}.png").write_bytes(b"png")
    leave_out = {transfer.embedded_key(stems[1]), transfer.embedded_key(stems[4])}
    out = tmp_path / "subset"
    assert transfer.pretraining_subset(source, out, leave_out) == 4
    for sub in ("images", "masks"):
        kept = {path.stem for path in (out / sub).iterdir()}
        assert kept == set(stems) - {stems[1], stems[4]}
        assert all((out / sub / f"{stem}.png").resolve() == (source / sub / f"{stem}.png").resolve()
                   for stem in kept)
    assert transfer.pretraining_subset(source, tmp_path / "two", leave_out, limit=2) == 2


def test_plot_only_redraws_the_curves_from_the_json(tmp_path):
    rows = [{"target": "dsb2018-without-nuclei", "start": "scratch", "miou": 0.7, "seconds": 700.0,
             "val_miou_curve": [0.7]}]
    rows += [{"target": target, "start": start, "miou": 0.5 + 0.1 * i, "seconds": 300.0,
              "val_miou_curve": [0.3, 0.4 + 0.1 * i]}
             for target in ("nuclei", "isbi2012") for i, start in enumerate(("scratch", "dsb2018"))]
    (tmp_path / "transfer.json").write_text(json.dumps({"settings": {}, "results": rows}))
    assert transfer.main(["--plot-only", "--out", str(tmp_path / "transfer")]) == 0
    assert (tmp_path / "transfer.png").stat().st_size > 10_000
    with pytest.raises(FileNotFoundError):
        transfer.main(["--plot-only", "--out", str(tmp_path / "absent")])
