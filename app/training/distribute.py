"""Data-parallel training: tf.distribute strategies (TensorFlow backend) or keras.distribution (JAX backend).

`--distribute none|mirrored|multiworker` picks one; `train.batch_size` is the global batch, split across replicas.
TensorFlow: "mirrored" is a MirroredStrategy over the local GPUs (or every logical CPU when there is none);
"multiworker" a MultiWorkerMirroredStrategy whose cluster comes from TF_CONFIG (or Slurm's environment).
JAX: both are `keras.distribution.DataParallel` over every device; "multiworker" first calls
`keras.distribution.initialize()`, which reads KERAS_DISTRIBUTION_JOB_ADDRESSES, ..._NUM_PROCESSES, ..._PROCESS_ID.
"""
import contextlib
import dataclasses
import os

import keras

from app.config.errors import ConfigError

MODES = ("none", "mirrored", "multiworker")


@dataclasses.dataclass
class Replicas:
    """How one process takes part in training.

    Attributes:
        mode: str. One of MODES.
        count: int. Replicas in sync (devices over all workers).
        chief: bool. Whether this process writes the run folder; the others write to a temporary one.
        scope: callable. Returns the context manager to build and compile the model in.
    """

    mode: str
    count: int
    chief: bool
    scope: object


@contextlib.contextmanager
def replicas(mode="none"):
    """Set up `mode` for the current backend; yield `Replicas`; undo global settings on exit.

    Create it before any other TensorFlow work: MultiWorkerMirroredStrategy must configure the runtime first.
    """
    if mode not in MODES:
        raise ConfigError(f"--distribute must be one of {', '.join(MODES)}, got {mode!r}")
    backend = keras.backend.backend()
    if mode == "none":
        yield Replicas(mode, 1, True, contextlib.nullcontext)
    elif backend == "tensorflow":
        strategy = _tf_strategy(mode)
        yield Replicas(mode, strategy.num_replicas_in_sync, strategy.extended.should_checkpoint, strategy.scope)
    elif backend == "jax":
        import jax

        if mode == "multiworker":
            keras.distribution.initialize()
        distribution = keras.distribution.DataParallel()
        keras.distribution.set_distribution(distribution)
        try:
            yield Replicas(mode, distribution.device_mesh.devices.size, jax.process_index() == 0,
                           contextlib.nullcontext)
        finally:
            keras.distribution.set_distribution(None)
    else:
        raise ConfigError(f"--distribute {mode} needs KERAS_BACKEND=tensorflow or jax, not {backend}")


def _tf_strategy(mode):
    import tensorflow as tf

    if mode == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if "TF_CONFIG" in os.environ:
        return _reduce_nests(tf.distribute.MultiWorkerMirroredStrategy())
    if "SLURM_PROCID" in os.environ:
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        return _reduce_nests(tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver))
    raise ConfigError("--distribute multiworker needs TF_CONFIG (or a Slurm job) describing the cluster "
                      "(README: \"Several GPUs, several machines\")")


def _reduce_nests(strategy):
    """Make `strategy.reduce` accept what Keras 3's `fit` gives a multi-worker strategy.

    `fit` reduces a whole (images, masks) batch to build the metrics (keras-team/keras#20585) and per-replica
    scalar logs with axis=0 (tensorflow/tensorflow#72388); reduce each leaf, scalars without an axis.
    """
    import tensorflow as tf

    reduce = strategy.reduce

    def reduce_leaves(op, value, axis=None):
        def leaf(v):
            local = v.values[0] if isinstance(v, tf.distribute.DistributedValues) else v
            return reduce(op, v, axis if local.shape.rank else None)

        return tf.nest.map_structure(leaf, value)

    strategy.reduce = reduce_leaves
    return strategy


def distribute_dataset(dataset, replicas):
    """A tf.data dataset of global batches, ready for `replicas`.

    Workers shard by DATA (every worker reads every file and keeps its share of each batch; FILE sharding cannot
    work on a pipeline that reads files inside `numpy_function`). Training batches are always full (the training
    stream repeats before it batches), so every replica gets an equal share of each.
    """
    if replicas.count == 1:
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
