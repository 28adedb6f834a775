"""Shared pytest options: slow tests are opt-in, dataset tests skip without ../shared/datasets."""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("SEGKIT_OFFLINE", "1")  # no test may reach the network, not even to probe it

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: opt in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def shared_dataset(name):
    """Path of a dataset in ../shared/datasets, or skip the test with a clear message."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent: this test needs the shared {name} dataset")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One tiny run (8 short epochs) on a synthetic 3-class dataset with a void (255) top border.

    Returns (run folder, dataset folder); shared by the evaluation and prediction tests.
    """
    from app.train import main
    from data.synthetic import write_shapes_dataset

    base = tmp_path_factory.mktemp("tiny_run")
    data = write_shapes_dataset(base / "data", count=8, size=(64, 80), num_classes=3, void_value=255, seed=3)
    overrides = ["data.mask=index", "data.num_classes=3", "data.void=255", "data.class_names=[bg,disc,box]",
                 "data.image_size=[64,64]", "model.base_filters=4", "model.depth=2", "train.batch_size=4",
                 "train.verbose=epoch"]
    argv = ["--data", str(data), "--epochs", "8", "--runs-dir", str(base / "runs"), "--name", "tiny"]
    assert main(argv + [arg for item in overrides for arg in ("--set", item)]) == 0
    (run,) = (base / "runs").iterdir()
    return run, data
