"""Data-parallel training: 2 replicas (MirroredStrategy, 2 workers, JAX DataParallel) match 1 replica.

Tolerance: histories agree to rtol 1e-5. With batch norm and Dice off and no pixel-voiding augmentation (see
`REPLICA_INVARIANT`), 1 and 2 replicas compute the same global-batch gradient up to float32 summation order
(two half-batch sums instead of one): measured 1e-7 relative after 12 AdamW steps on CPU. Real faults (a loss
counted per replica, unsharded or reordered batches) show up at 1e-3 or more.
Keras under any tf.distribute strategy draws one batch from its own pass over the dataset before training,
so the 1-replica reference also runs under a (one-device) MirroredStrategy: both see the same batches.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from train_helpers import REPLICA_INVARIANT, REPO, history, only_run_dir, run, train_command

from app.config.errors import ConfigError
from app.training.distribute import replicas

RTOL = 1e-5
COMPARED = ["loss", "miou", "val_loss", "val_miou", "val_pixel_accuracy"]
TWO_CPUS = """
import tensorflow as tf
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)
"""
MIRRORED_RUN = TWO_CPUS + """
import json, sys
import keras, numpy as np, yaml
from app.training.distribute import distribute_dataset, replicas
from app.train import main
from app.dataset.prepared import prepare_data
from data.masks import IGNORE_INDEX
from models.losses import get_loss
from models.metrics import ConfusionMatrixMetric

runs, args = sys.argv[1], sys.argv[2:]
assert main(["--distribute", "mirrored", "--runs-dir", runs, *args, "--set", "train.batch_size=7"]) == 2
assert main(["--distribute", "mirrored", "--runs-dir", runs, *args]) == 0
(run_dir,) = __import__("pathlib").Path(runs).iterdir()
prepared = prepare_data(yaml.safe_load((run_dir / "config.yaml").read_text()))
matrices = {}
for mode in ("none", "mirrored"):
    with replicas(mode) as setup:
        with setup.scope():
            model = keras.saving.load_model(run_dir / "model.keras", compile=False)
            metric = ConfusionMatrixMetric(2, ignore_class=IGNORE_INDEX)
            model.compile(loss=get_loss("ce", ignore_class=IGNORE_INDEX), metrics=[metric])
        model.evaluate(distribute_dataset(prepared.val, setup), verbose=0)
        matrices[f"{mode}_{setup.count}"] = keras.ops.convert_to_numpy(metric.confusion_matrix).tolist()
print("MATRICES " + json.dumps(matrices))
"""


def _assert_same_history(runs, reference):
    got, want = history(runs), history(reference)
    assert got["epoch"].tolist() == want["epoch"].tolist()
    np.testing.assert_allclose(got[COMPARED], want[COMPARED], rtol=RTOL)


def _one_replica_reference(runs, epochs):
    done = run(train_command("--distribute", "mirrored", "--epochs", epochs, "--runs-dir", str(runs),
                             *REPLICA_INVARIANT))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distribute:" not in done.stdout


@pytest.mark.slow
def test_two_mirrored_replicas_match_one_and_sum_the_confusion_matrix(tmp_path):
    _one_replica_reference(tmp_path / "one", "2")
    done = run([sys.executable, "-c", MIRRORED_RUN, str(tmp_path / "two"), "--epochs", "2", *REPLICA_INVARIANT])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "train.batch_size 7 is the global batch: it must be a multiple of the 2 replicas" in done.stderr
    assert "distribute: mirrored, 2 replicas, 4 images each per step" in done.stdout
    _assert_same_history(tmp_path / "two", tmp_path / "one")
    matrices = json.loads(done.stdout.split("MATRICES ")[1])
    assert matrices["mirrored_2"] == matrices["none_1"]
    assert sum(map(sum, matrices["none_1"])) == 16 * 256 * 256


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_match_one_replica_and_only_the_chief_writes(tmp_path):
    _one_replica_reference(tmp_path / "one", "1")
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    command = train_command("--distribute", "multiworker", "--epochs", "1", "--runs-dir", str(tmp_path / "two"),
                            *REPLICA_INVARIANT)
    workers, logs = [], [tmp_path / f"worker{index}.log" for index in range(2)]
    try:
        for index, log in enumerate(logs):
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            with open(log, "w") as out:
                workers.append(subprocess.Popen(command, cwd=REPO, env={**os.environ, "TF_CONFIG": config},
                                                stdout=out, stderr=subprocess.STDOUT))
        for worker in workers:
            worker.wait(timeout=400)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    outputs = [log.read_text() for log in logs]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    assert "run folder:" in outputs[0] and "run folder:" not in outputs[1]
    assert "distribute: multiworker, 2 replicas" in outputs[1]
    assert (only_run_dir(tmp_path / "two") / "metrics.json").exists()
    _assert_same_history(tmp_path / "two", tmp_path / "one")


@pytest.mark.slow
def test_jax_data_parallel_matches_one_device(tmp_path):
    script = ("import sys; from app.train import main\n"
              "for mode in ('none', 'mirrored'):\n"
              "    assert main(['--distribute', mode, '--runs-dir', f'{sys.argv[1]}/{mode}', *sys.argv[2:]]) == 0\n")
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = run([sys.executable, "-c", script, str(tmp_path), "--epochs", "1", *REPLICA_INVARIANT], env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distribute: mirrored, 2 replicas" in done.stdout
    _assert_same_history(tmp_path / "mirrored", tmp_path / "none")


def test_distribute_mode_and_cluster_errors(monkeypatch):
    with pytest.raises(ConfigError, match="--distribute must be one of none, mirrored, multiworker"):
        with replicas("horovod"):
            pass
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        with replicas("multiworker"):
            pass
    with replicas("none") as setup:
        assert (setup.count, setup.chief) == (1, True)
