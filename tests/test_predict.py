import dataclasses
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from app.inference import predictor as inference
from app.config.schema import Augment, Config
from app.inference.predictor import load_predictor, model_logits, predict_image, tile_weights, tta_flips
from app.predict import main
from data.masks import read_image
from data.synthetic import shapes_sample


@pytest.fixture(scope="module")
def predictor(tiny_run):
    return load_predictor(tiny_run[0])


class Recorder:
    """A model wrapper that records the input shapes it is called with."""

    def __init__(self, model):
        self.model, self.shapes = model, []

    def predict_on_batch(self, batch):
        self.shapes.append(batch.shape)
        return self.model.predict_on_batch(batch)


def test_cli_writes_index_masks_of_input_size(tiny_run, predictor, tmp_path):
    run, data = tiny_run
    odd = tmp_path / "in" / "odd.jpg"
    odd.parent.mkdir()
    cv2.imwrite(str(odd), shapes_sample(np.random.default_rng(1), (50, 37))[0])
    out = tmp_path / "out"
    assert main(["--run", str(run), str(data / "images"), str(odd), "--out", str(out), "--colour", "--overlay"]) == 0
    for image in [*sorted((data / "images").iterdir()), odd]:
        mask = cv2.imread(str(out / f"{image.stem}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8 and mask.shape == cv2.imread(str(image)).shape[:2]
        assert set(np.unique(mask)) <= {0, 1, 2}
        expected = predict_image(predictor, read_image(image, 3)).argmax(-1)
        np.testing.assert_array_equal(mask, expected)
        colour = cv2.imread(str(out / "colour" / f"{image.stem}.png"))
        assert colour.shape == mask.shape + (3,)
        assert (out / "overlay" / f"{image.stem}.png").is_file()
    palette = pd.read_csv(out / "palette.csv")
    assert palette["name"].tolist() == ["bg", "disc", "box"]
    colour = cv2.cvtColor(cv2.imread(str(out / "colour" / "odd.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(colour, palette[["r", "g", "b"]].to_numpy()[mask])


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
def test_tiled_agrees_with_whole_image(predictor, blend):
    image = shapes_sample(np.random.default_rng(7), (160, 192))[0].astype(np.float32) / 255
    whole = predict_image(predictor, image)
    assert len(np.unique(whole.argmax(-1))) == 3
    for tile, overlap in (((128, 128), 0.5), ((96, 128), 0.25)):
        tiled = predict_image(predictor, image, tile=tile, overlap=overlap, blend=blend)
        assert tiled.shape == whole.shape == (160, 192, 3)
        assert (tiled.argmax(-1) == whole.argmax(-1)).mean() >= 0.995
    covering = predict_image(predictor, image, tile=(160, 256), blend=blend)
    np.testing.assert_array_equal(covering, whole)


def test_tiles_bound_model_input_and_resize_round_trip(predictor, monkeypatch):
    monkeypatch.setattr(inference, "AUTO_TILE_PIXELS", 48 * 48)
    monkeypatch.setattr(inference, "DEFAULT_TILE", 32)
    recorder = Recorder(predictor.model)
    image = np.random.default_rng(0).random((70, 90, 3), dtype=np.float32)
    logits = predict_image(dataclasses.replace(predictor, model=recorder), image)
    assert logits.shape == (70, 90, 3)
    assert {shape[1:3] for shape in recorder.shapes} == {(32, 32)}
    recorder.shapes.clear()
    resized = dataclasses.replace(predictor, model=recorder, resize=(40, 48))
    assert predict_image(resized, image).shape == (70, 90, 3)
    assert recorder.shapes == [(1, 40, 48, 3)]


def test_tile_weights():
    for blend in ("gaussian", "linear"):
        weights = tile_weights((32, 48), 0.25, blend)
        assert weights.shape == (32, 48) and weights.min() > 0 and weights.max() == pytest.approx(1.0, abs=0.01)
        np.testing.assert_allclose(weights, weights[::-1, ::-1], rtol=1e-6)
    linear = tile_weights((1, 16), 0.25, "linear")[0]
    np.testing.assert_allclose(linear[:5], [0.2, 0.4, 0.6, 0.8, 1.0])
    with pytest.raises(ValueError, match="blend must be one of"):
        tile_weights((8, 8), blend="cosine")


def test_flip_tta_of_a_pointwise_model_changes_nothing():
    class Pointwise:
        def predict_on_batch(self, batch):
            return np.concatenate([batch, -batch], axis=-1)

    batch = np.random.default_rng(0).random((2, 8, 12, 1), dtype=np.float32)
    np.testing.assert_allclose(model_logits(Pointwise(), batch, ((2,), (1,))), model_logits(Pointwise(), batch))


def test_tta_averages_the_flips_the_run_trained_with():
    class LeftToRight:  # a model that is not flip-invariant: scores grow with the column index
        def predict_on_batch(self, batch):
            columns = np.arange(batch.shape[2], dtype=np.float32)[None, None, :, None]
            return np.broadcast_to(columns, batch.shape[:3] + (1,)) + batch

    batch = np.random.default_rng(0).random((1, 4, 6, 1), dtype=np.float32)
    np.testing.assert_allclose(model_logits(LeftToRight(), batch, ((1,),)), batch + np.arange(6)[:, None])  # up-down: same
    np.testing.assert_allclose(model_logits(LeftToRight(), batch, ((2,),)), batch + 2.5)  # left-right: mean column
    def flips(hflip, vflip):
        return tta_flips(Config(augment=Augment(hflip=hflip, vflip=vflip)))

    assert flips(0.5, 0.0) == ((2,),)
    assert flips(0.5, 0.5) == ((2,), (1,))
    assert flips(0, 0) == ()
    assert tta_flips(None) == ((2,), (1,))


def test_bad_inputs_are_one_line_errors_without_partial_files(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    images = tmp_path / "in"
    shutil.copytree(data / "images", images)
    (images / "zz_broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    assert main(["--run", str(run), str(images), "--out", str(out)]) == 1
    assert capsys.readouterr().err == (f"error: {images / 'zz_broken.png'}: unreadable or corrupt image\n"
                                       "1 of 9 image(s) skipped (no mask written)\n")
    assert not (out / "zz_broken.png").exists() and not list(out.glob(".*"))
    assert len(list(out.glob("*.png"))) == 8
    assert main(["--run", str(tmp_path), str(images), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: not a run folder (no config.yaml)\n"
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "config.yaml", bare)
    assert main(["--run", str(bare), str(images), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bare / 'model.keras'}: model file not found")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    assert main(["--run", str(run), str(data / "images"), "--out", str(blocker / "sub")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {blocker / 'sub'}: cannot create output folder")


def test_channel_count_the_model_does_not_take(tiny_run, tmp_path, capsys):
    from models.registry import get_model

    run, data = tiny_run
    model_path = tmp_path / "two.keras"
    get_model("unet", (None, None, 2), 3, depth=2, base_filters=4).save(model_path)
    image = next((data / "images").iterdir())
    assert main(["--run", str(run), "--model", str(model_path), str(image), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err == (f"error: {image}: image has 3 channels, the model takes 2\n"
                                       "1 of 1 image(s) skipped (no mask written)\n")
