"""Fine-tuning a pretrained encoder on small data: frozen for the first epochs, then a lower learning rate.

`train.freeze_encoder_epochs: N` keeps the encoder frozen (its batch norms in inference mode, using the pretrained
statistics) for epochs 0..N-1 and trains it afterwards; the state is decided at the start of every epoch, so a
resumed run picks it up from its epoch number. `train.encoder_lr_scale: s` multiplies the learning rate of every
encoder variable by s (the optimizer's `update_step` sees the scaled rate, so it holds for Adam as for SGD, unlike
gradient scaling, which Adam normalises away); decoupled weight decay (AdamW) keeps the full rate.
"""
import keras

from models.encoders import encoder_layers


def set_encoder_trainable(model, trainable):
    """Freeze (False) or unfreeze (True) the encoder of `model` (see `models.encoders.encoder_layers`)."""
    for layer in encoder_layers(model):
        layer.trainable = trainable


class EncoderFreeze(keras.callbacks.Callback):
    """Encoder frozen for the first `epochs` epochs of `fit` (counted from 0, so resume continues the schedule).

    The optimizer is built over all variables when training begins, so its slots match whatever the encoder's
    state (and a resumed backup); a new train function is traced whenever the state changes.

    Args:
        epochs: int. Epochs with the encoder frozen.
    """

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs
        self._frozen = None

    def on_train_begin(self, logs=None):
        self._frozen = None
        if not self.model.optimizer.built:
            set_encoder_trainable(self.model, True)
            self.model.optimizer.build(self.model.trainable_variables)

    def on_epoch_begin(self, epoch, logs=None):
        frozen = epoch < self.epochs
        if frozen == self._frozen:
            return
        set_encoder_trainable(self.model, not frozen)
        self._frozen = frozen
        self.model.make_train_function(force=True)

    def on_train_end(self, logs=None):
        set_encoder_trainable(self.model, True)
        self.model.train_function = None  # traced for the last state: the next fit traces anew


def scale_encoder_learning_rate(model, scale):
    """Make `model.optimizer` update the encoder's variables with `scale` times the learning rate."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    keys = {optimizer._var_key(variable) for layer in encoder_layers(model) for variable in layer.trainable_weights}
    update_step = optimizer.update_step

    def scaled_update_step(gradient, variable, learning_rate):
        if optimizer._var_key(variable) in keys:
            learning_rate = learning_rate * scale
        return update_step(gradient, variable, learning_rate)

    optimizer.update_step = scaled_update_step


def check_finetune_options(train, model):
    """Raise ValueError naming the key when `train.freeze_encoder_epochs` / `encoder_lr_scale` cannot apply."""
    epochs, scale = train.get("freeze_encoder_epochs") or 0, train.get("encoder_lr_scale", 1.0)
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"train.freeze_encoder_epochs must be a whole number >= 0: got {epochs!r}")
    if not isinstance(scale, (int, float)) or scale < 0:
        raise ValueError(f"train.encoder_lr_scale must be a number >= 0: got {scale!r}")
    if epochs and keras.backend.backend() == "jax":
        raise ValueError("train.freeze_encoder_epochs needs the TensorFlow backend: JAX optimizers must update the "
                         "variables they were built with (train.encoder_lr_scale works on JAX)")
    if (epochs or scale != 1.0) and not model.get("encoder") and model.get("name") != "unet":
        raise ValueError(f"train.freeze_encoder_epochs and train.encoder_lr_scale need model.encoder (or model.name "
                         f"unet): model {model.get('name')!r} has no encoder")


def finetune_callbacks(model, train):
    """Apply `train.encoder_lr_scale` to the compiled `model`; return the callbacks for `freeze_encoder_epochs`."""
    scale = train.get("encoder_lr_scale", 1.0)
    if scale != 1.0:
        scale_encoder_learning_rate(model, scale)
    epochs = train.get("freeze_encoder_epochs") or 0
    return [EncoderFreeze(epochs)] if epochs else []
