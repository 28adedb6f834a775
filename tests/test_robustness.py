"""The commands hold up: outputs never touch inputs, clean stops on signals, checked configs and models, quiet
output, any working folder (issue 16)."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from train_helpers import REPO, TINY, only_run_dir, train_command

from app.config.loading import load_config, parse_override
from app.runtime.outputs import check_output_folder
from app.train import main as train_main


def digest(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def write_png(path, array):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


# Outputs never touch inputs ------------------------------------------------------------------------------------

@pytest.fixture
def images(tmp_path):
    """A folder of three real 64x80 RGB PNGs."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    for name in ("a", "b", "c"):
        write_png(folder / f"{name}.png", rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    return folder


def predict(argv, capsys):
    from app.predict import main

    code = main(argv)
    return code, capsys.readouterr()


@pytest.mark.parametrize("where", ["is", "inside", "contains"])
def test_predict_refuses_an_output_folder_on_its_inputs(tiny_run, images, capsys, where):
    run, _ = tiny_run
    out = {"is": images, "inside": images / "masks", "contains": images.parent}[where]
    before = digest(images.parent)
    code, captured = predict(["--run", str(run), str(images), "--out", str(out)], capsys)
    assert code == 2
    relation = {"is": "is", "inside": "lies inside", "contains": "contains"}[where]
    assert captured.err == (f"error: {out}: the output folder {relation} the input folder {images.resolve()}; "
                            "outputs never go beside inputs: choose another --out\n")
    assert digest(images.parent) == before


def test_predict_refuses_the_run_dataset_mask_folder_and_an_input_file_folder(tiny_run, images, capsys):
    run, data = tiny_run
    before = digest(data)
    code, captured = predict(["--run", str(run), str(images / "a.png"), "--out", str(data / "masks")], capsys)
    assert code == 2 and captured.err.count("\n") == 1
    assert f"the output folder lies inside the input folder {data.resolve()}" in captured.err
    assert digest(data) == before
    code, captured = predict(["--run", str(run), str(images / "a.png"), "--out", str(images)], capsys)
    assert code == 2 and f"is the folder of the input {images / 'a.png'}" in captured.err


def test_predict_never_overwrites_without_overwrite(tiny_run, images, tmp_path, capsys):
    run, _ = tiny_run
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.png").write_bytes(b"the user's own file")
    code, captured = predict(["--run", str(run), str(images), "--out", str(out)], capsys)
    assert code == 2
    assert captured.err == (f"error: {out / 'b.png'}: already exists; give --overwrite to replace, "
                            "or choose another --out\n")
    assert sorted(p.name for p in out.iterdir()) == ["b.png"], "wrote something before refusing"
    assert (out / "b.png").read_bytes() == b"the user's own file"
    code, captured = predict(["--run", str(run), str(images), "--out", str(out), "--overwrite"], capsys)
    assert code == 0 and (out / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_goes_on_past_unreadable_files_and_exits_1(tiny_run, images, tmp_path, capsys):
    run, _ = tiny_run
    (images / "broken.png").write_bytes(b"not a png at all")
    (images / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    code, captured = predict(["--run", str(run), str(images), "--out", str(out)], capsys)
    assert code == 1
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png", "c.png"]
    lines = captured.err.splitlines()
    assert [line for line in lines if line.startswith("error:")] == [
        f"error: {images / 'broken.png'}: unreadable or corrupt image",
        f"error: {images / 'empty.jpg'}: unreadable or corrupt image"]
    assert lines[-1] == "2 of 5 image(s) skipped (no mask written)"
    assert "3 mask(s) written" in captured.out


def test_every_writing_command_keeps_out_of_the_dataset(tiny_run, tmp_path, capsys):
    from app.check_data import main as check_main
    from app.evaluate import main as evaluate_main
    from app.import_annotations import main as import_main

    run, data = tiny_run
    before = digest(data)
    inside = data / "report"
    assert evaluate_main(["--run", str(run), "--out", str(inside)]) == 2
    assert check_main(["--data", str(data), "--set", "data.mask=index", "--out", str(inside)]) == 2
    labelme = tmp_path / "labelme"
    labelme.mkdir()
    (labelme / "x.json").write_text(json.dumps({"imagePath": "x.png", "imageHeight": 8, "imageWidth": 8,
                                                "shapes": []}))
    assert import_main([str(labelme), "--format", "labelme", "--out", str(labelme / "converted")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all("outputs never go beside inputs" in line for line in err), err
    assert digest(data) == before and not inside.exists() and not (labelme / "converted").exists()


def test_check_output_folder_resolves_relative_and_dotted_paths(tmp_path, monkeypatch):
    (tmp_path / "data" / "masks").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "data")
    with pytest.raises(ValueError, match="lies inside the input folder"):
        check_output_folder("../data/masks/../masks/out", [tmp_path / "data" / "masks"])
    check_output_folder("../elsewhere", [tmp_path / "data" / "masks"])


# Clean stops --------------------------------------------------------------------------------------------------

def _start_training(runs, *extra):
    command = train_command("--epochs", "3", "--runs-dir", str(runs), *TINY, *extra)
    return command, subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)


def _wait_for(condition, process, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"training ended (exit {process.returncode}) before the stop: "
                                 f"{process.stderr.read()[-2000:]}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the stop condition never came")


def _stop(process, signum, timeout=120):
    process.send_signal(signum)
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the process did not exit after the signal (a hung tf.data iterator?)") from None
    return process.returncode, err


def _history_rows(runs):
    found = list(runs.glob("*/history.csv"))
    return len(found[0].read_text().splitlines()) - 1 if found else -1


@pytest.mark.slow
def test_sigint_after_an_epoch_stops_with_one_line_and_exit_130(tmp_path):
    _, process = _start_training(tmp_path, "--set", "train.checkpoint_every_minutes=null")
    _wait_for(lambda: _history_rows(tmp_path) >= 1, process)
    code, err = _stop(process, signal.SIGINT)
    assert code == 130
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("stopped ") and err.endswith("; run the same command to resume\n"), err
    run_dir = only_run_dir(tmp_path)
    state = json.loads((run_dir / "backup" / "training_metadata.json").read_text())
    assert state["epoch"] >= 1 and "batch" not in state
    assert not list(run_dir.rglob(".*tmp*")), "half-written file left"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_before_anything_is_saved_leaves_no_run_folder(tmp_path, signum):
    _, process = _start_training(tmp_path, "--set", "train.checkpoint_every_minutes=null",
                                 "--set", "train.batch_size=1")
    _wait_for(lambda: list(tmp_path.glob("*/config.yaml")), process)
    code, err = _stop(process, signum)
    assert code == 128 + signum and "Traceback" not in err and err.count("\n") == 1, err
    assert err.endswith(", before anything was saved (no run folder kept); run the same command to start\n"), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigterm_mid_epoch_keeps_a_mid_epoch_backup_and_resumes(tmp_path):
    # A checkpoint interval of a few milliseconds stands in for a 2-hour epoch with a 30-minute interval.
    extra = ("--set", "train.checkpoint_every_minutes=0.0001", "--set", "train.batch_size=2")
    command, process = _start_training(tmp_path, *extra)
    backup = lambda: next(tmp_path.glob("*/backup/training_metadata.json"), None)  # noqa: E731
    _wait_for(lambda: backup() is not None and "batch" in backup().read_text(), process)
    code, err = _stop(process, signal.SIGTERM)
    assert code == 143 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("stopped at epoch ") and ", batch " in err, err
    run_dir = only_run_dir(tmp_path)
    state = json.loads((run_dir / "backup" / "training_metadata.json").read_text())
    assert err.endswith(f"; run the same command to resume (from the mid-epoch backup after batch {state['batch']})\n")
    assert state["batch"] >= 1 and (run_dir / "backup" / state["weights"]).is_file()

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (f"resuming unfinished run {run_dir} after epoch {state['epoch']}/3 (mid-epoch backup after batch "
            f"{state['batch']}: epoch {state['epoch'] + 1} starts again from its first batch") in again.stdout
    assert (run_dir / "metrics.json").is_file() and only_run_dir(tmp_path) == run_dir


# Configuration schema -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("data.image_size=64", "data.image_size: 64 is not a pair [H, W] of positive integers"),
    ("train.epochs=one", "train.epochs: 'one' is not a positive integer"),
    ("train.epochs=0", "train.epochs: 0 must be >= 1"),
    ("train.learning_rate=fast", "train.learning_rate: 'fast' is not a number > 0"),
    ("train.batch_size=2.5", "train.batch_size: 2.5 is not a positive integer"),
    ("data.val_fraction=1", "data.val_fraction: 1 must be >= 0 and < 1"),
    ("augment.hflip=2", "augment.hflip: 2 must be >= 0 and <= 1"),
    ("train.precision=half", "train.precision: 'half' is not one of float32, mixed_float16, mixed_bfloat16, auto"),
    ("data.invert=maybe", "data.invert: 'maybe' is not true or false"),
    ("train=5", "train: 5 is not a section (a mapping of keys to values)"),
    ("name=a/b", "name: 'a/b' is not a run name"),
])
def test_schema_names_key_value_and_what_is_allowed(override, message):
    with pytest.raises(ValueError) as err:
        load_config(None, [parse_override(override)])
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_schema_reads_yaml_1_1_exponents_and_reports_every_bad_key():
    assert load_config(None, [parse_override("train.learning_rate=3e-3")]).train.learning_rate == 0.003
    with pytest.raises(ValueError) as err:
        load_config(None, [parse_override("train.epochs=0"), parse_override("seed=-1")])
    assert str(err.value).splitlines() == ["seed: -1 must be >= 0", "train.epochs: 0 must be >= 1"]


def test_schema_lets_open_sections_and_keys_without_a_rule_through():
    config = load_config(None, [{"model": {"name": "unet", "encoder": "anything"}}, {"loss": {"gamma": 2}}])
    assert config.model.encoder == "anything" and config.loss.gamma == 2


def test_bad_palette_csv_is_one_line_naming_the_file(tmp_path):
    empty, colours = tmp_path / "empty.csv", tmp_path / "colours.csv"
    empty.write_text("")
    colours.write_text("name,r,g,b\nbackground,0,0,0\nroad,red,0,0\n")
    for path, problem in ((empty, "cannot read palette CSV"), (colours, "column r must hold integers 0-255")):
        with pytest.raises(ValueError) as err:
            load_config(None, [{"data": {"palette": str(path)}}])
        assert str(err.value).startswith(f"data.palette: {path}: {problem}") and "\n" not in str(err.value)


@pytest.mark.parametrize("value, problem", [
    ("[1", "the value is not valid YAML (expected ',' or ']'"),
    ("!!python/object/apply:os.system ['touch PWNED']", "could not determine a constructor for the tag"),
])
def test_set_parse_errors_are_one_line_and_tags_never_run(tmp_path, capsys, monkeypatch, value, problem):
    monkeypatch.chdir(tmp_path)
    code = train_main(["--runs-dir", str(tmp_path / "runs"), "--set", f"train.learning_rate={value}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and problem in err, err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "runs").exists()


def test_bad_values_create_no_run_folder(tmp_path, capsys):
    assert train_main(["--epochs", "0", "--runs-dir", str(tmp_path / "runs"), *TINY]) == 2
    assert capsys.readouterr().err == "error: train.epochs: 0 must be >= 1\n"
    assert not (tmp_path / "runs").exists()


# Models checked at load ---------------------------------------------------------------------------------------

def _save(model, path):
    model.save(path)
    return path


def double(x):
    return x * 2


@pytest.mark.parametrize("kind", ["classification", "stride", "lambda", "random"])
def test_predict_refuses_models_that_are_not_segmentation_models(tmp_path, images, capsys, kind):
    inputs = keras.Input((None, None, 3))
    if kind == "classification":
        path = _save(keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(inputs))),
                     tmp_path / "classify.keras")
        expected = ("classify.keras: not a segmentation model: input (None, None, None, 3), output (None, 5); "
                    "segkit needs (batch, H, W, channels) in and (batch, H, W, classes) out")
    elif kind == "stride":
        path = _save(keras.Model(inputs, keras.layers.Conv2D(2, 3, strides=2, padding="same")(inputs)),
                     tmp_path / "stride.keras")
        expected = "stride.keras: not a segmentation model: a 64x64 input gives a 32x32 output"
    elif kind == "lambda":
        path = _save(keras.Model(inputs, keras.layers.Conv2D(2, 1)(keras.layers.Lambda(double)(inputs))),
                     tmp_path / "lambda.keras")
        expected = "lambda.keras: the model calls the Python function 'double', which is not part of segkit"
    else:
        path = tmp_path / "random.keras"
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        expected = "random.keras: not a Keras model file (a .keras file is a zip archive; this one is not)"
    code, captured = predict(["--model", str(path), str(images), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"error: {tmp_path}/{expected}"), captured.err
    assert not (tmp_path / "out").exists()


# Quiet by default, readable progress, splits named ------------------------------------------------------------

@pytest.mark.slow
def test_no_tensorflow_log_lines_unless_verbose(tmp_path):
    command = [sys.executable, "-m", "app.info", "--model", "unet", "--input-size", "32", "32", "1",
               "--option", "depth=2", "--option", "base_filters=4"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"}
    quiet = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = subprocess.run(command + ["--verbose"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert loud.returncode == 0 and loud.stdout == quiet.stdout
    if "cpu_feature_guard" not in loud.stderr and "absl::InitializeLog" not in loud.stderr:
        pytest.skip("this TensorFlow build prints no start-up lines on this machine")


def test_native_info_lines_are_held_back(capfd, monkeypatch):
    from app.runtime.native_logs import quiet_native_stderr

    monkeypatch.delenv("SEGKIT_VERBOSE", raising=False)
    with quiet_native_stderr():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nE0000 a real problem\n")
    assert capfd.readouterr().err == "E0000 a real problem\n"


@pytest.mark.slow
def test_progress_line_names_splits_and_leaves_per_class_scores_out(tmp_path, capsys):
    assert train_main(["--epochs", "1", "--runs-dir", str(tmp_path), *TINY]) == 0
    out = capsys.readouterr().out
    step_lines = [line for line in out.splitlines() if "/step" in line]
    assert step_lines and all("iou_" not in line for line in step_lines), step_lines
    assert " - train_loss: " in step_lines[-1] and " - val_miou: " in step_lines[-1]
    assert "iou_nucleus" in (only_run_dir(tmp_path) / "history.csv").read_text().splitlines()[0]
    assert "best model, validation split: mIoU " in out
    assert "best model per class, validation split:" in out and "nucleus" in out.split("per class")[-1]


@pytest.mark.slow
def test_no_validation_split_is_said_so(tmp_path, capsys):
    assert train_main(["--epochs", "1", "--runs-dir", str(tmp_path), "--set", "data.val_fraction=0", *TINY]) == 0
    out = capsys.readouterr().out
    assert "validation: mIoU" not in out and " - val_" not in out
    assert "best model, training split (there is no validation split): mIoU " in out


# Any working folder, segkit entry point -----------------------------------------------------------------------

def test_commands_work_from_a_folder_holding_models_py_and_data_py(tmp_path):
    for name in ("models.py", "data.py"):
        (tmp_path / name).write_text("raise SystemExit('the user module was imported')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "app.info", "--model", "unet", "--input-size", "32", "32", "1",
                             "--option", "depth=2"], cwd=tmp_path, capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "parameters" in result.stdout


def test_segkit_dispatches_to_the_commands(capsys):
    from app.cli import main

    assert main(["info", "--model", "unet", "--input-size", "32", "32", "1", "--option", "depth=2"]) == 0
    assert "output stride    4" in capsys.readouterr().out
    assert main(["check-data", "--data", "no/such/folder"]) == 1
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "segkit {train,predict" in capsys.readouterr().out
