"""The configured model, built under the run's precision policy and compiled with its loss, metrics and optimizer."""
import keras

from app.runtime.devices import conv_weight_gradients_wanted, resolve_precision
from app.training import multilabel
from app.training.conv_gradients import conv_weight_gradients
from app.training.optimizer import build_optimizer
from data.masks import IGNORE_INDEX
from data.multilabel import is_multilabel
from models.class_weights import class_weights_from_frequencies
from models.losses import get_loss
from models.metrics import segmentation_metrics
from models.registry import get_model


def build_model(config, num_classes):
    """The configured architecture (float32 logits), built under the `train.precision` dtype policy.

    The global policy is restored afterwards; the model keeps its own (and `compile` wraps the optimizer in a
    `LossScaleOptimizer` for mixed_float16).
    """
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(resolve_precision(config.train.precision))
    channels = config.data.channels  # auto is resolved from the files by `train`; without data: RGB
    try:
        return get_model(config.model.name, input_shape=(None, None, 3 if channels == "auto" else channels),
                         num_classes=num_classes, **config.model.builder_options())
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def compute_class_weights(config, class_table):
    scheme = config.loss.class_weights
    if scheme == "none":
        return None
    return class_weights_from_frequencies(class_table, scheme)


def compile_model(model, config, prepared, class_weights=None):
    num_classes = prepared.encoding.num_classes
    if is_multilabel(prepared.encoding):
        loss, metrics = multilabel.loss_and_metrics(config, prepared.class_names, class_weights)
    else:
        loss = get_loss(config.loss.name, num_classes=num_classes, ignore_class=IGNORE_INDEX,
                        class_weights=None if class_weights is None else list(map(float, class_weights)),
                        **config.loss.loss_options())
        metrics = segmentation_metrics(num_classes, prepared.class_names, ignore_class=IGNORE_INDEX)
    train = config.train
    train_rows = int((prepared.frame["split"] == "train").sum())  # also a bare namespace's frame (tests, benchmarks)
    model.compile(optimizer=build_optimizer(train, train_rows), loss=loss, metrics=metrics,
                  jit_compile=train.jit_compile, steps_per_execution=train.steps_per_execution)
    if keras.backend.backend() == "tensorflow":
        conv_weight_gradients(conv_weight_gradients_wanted())
    return model
