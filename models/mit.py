"""Mix Transformer (MiT), SegFormer's encoder (Xie et al., NeurIPS 2021), in `keras.ops` for any input size.

Four stages, each an overlapping patch embedding (zero padding, a strided convolution, layer norm) and blocks
whose attention shrinks keys and values by a strided convolution ("efficient self-attention") and whose
feed-forward part holds a 3x3 depthwise convolution in place of position embeddings. Tensors stay (batch, height, width, channels) between
layers, so height and width are free (multiples of 32) and the model saves and reloads as a `.keras` file.

Weights load by name from a keras-hub MiT preset (`config.json` + `model.weights.h5`, as `MiTBackbone.save_to_preset`
writes them and as the Kaggle presets hold them), without keras-hub.
"""
import json
import pathlib

import h5py
import keras
import numpy as np
from keras import ops

MIT_VARIANTS = {
    "mit_b0": ((2, 2, 2, 2), (32, 64, 160, 256)),
    "mit_b1": ((2, 2, 2, 2), (64, 128, 320, 512)),
    "mit_b2": ((3, 4, 6, 3), (64, 128, 320, 512)),
    "mit_b3": ((3, 4, 18, 3), (64, 128, 320, 512)),
    "mit_b4": ((3, 8, 27, 3), (64, 128, 320, 512)),
    "mit_b5": ((3, 6, 40, 3), (64, 128, 320, 512)),
}
"""(blocks per stage, channels per stage) of SegFormer's six encoders."""
NUM_HEADS = (1, 2, 5, 8)
REDUCTION_RATIOS = (8, 4, 2, 1)
PATCH_SIZES = (7, 3, 3, 3)
PATCH_STRIDES = (4, 2, 2, 2)
MAX_DROP_PATH = 0.1
BLOCK_EPSILON, NORM_EPSILON = 1e-6, 1e-5


@keras.saving.register_keras_serializable(package="segkit")
class EfficientSelfAttention(keras.layers.Layer):
    """Multi-head self-attention whose keys and values come from the map shrunk `reduction` times per side."""

    def __init__(self, dim, num_heads, reduction, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.reduction = dim, num_heads, reduction
        dense = dict(dtype=self.dtype_policy)
        self.q = keras.layers.Dense(dim, name="q", **dense)
        self.k = keras.layers.Dense(dim, name="k", **dense)
        self.v = keras.layers.Dense(dim, name="v", **dense)
        self.proj = keras.layers.Dense(dim, name="proj", **dense)
        if reduction > 1:
            self.sr = keras.layers.Conv2D(dim, reduction, strides=reduction, name="sr", **dense)
            self.norm = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name="norm", **dense)

    def build(self, input_shape):
        for layer in (self.q, self.k, self.v, self.proj):
            layer.build(input_shape)
        if self.reduction > 1:
            self.sr.build(input_shape)
            self.norm.build(input_shape)

    def _heads(self, x, batch):
        """(batch, ..., dim) -> (batch, tokens, heads, dim / heads)."""
        return ops.reshape(x, (batch, -1, self.num_heads, self.dim // self.num_heads))

    def call(self, x):
        shape = ops.shape(x)
        batch, height, width = shape[0], shape[1], shape[2]
        context = self.norm(self.sr(x)) if self.reduction > 1 else x
        attended = ops.dot_product_attention(self._heads(self.q(x), batch), self._heads(self.k(context), batch),
                                             self._heads(self.v(context), batch))
        return self.proj(ops.reshape(attended, (batch, height, width, self.dim)))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="segkit")
class MixFeedForward(keras.layers.Layer):
    """Dense (x4), 3x3 depthwise convolution, GELU, dense back."""

    def __init__(self, dim, expansion=4, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.expansion = dim, expansion
        self.fc1 = keras.layers.Dense(dim * expansion, dtype=self.dtype_policy, name="fc1")
        self.dwconv = keras.layers.DepthwiseConv2D(3, padding="same", dtype=self.dtype_policy, name="dwconv")
        self.fc2 = keras.layers.Dense(dim, dtype=self.dtype_policy, name="fc2")

    def build(self, input_shape):
        self.fc1.build(input_shape)
        hidden = (*input_shape[:-1], self.dim * self.expansion)
        self.dwconv.build(hidden)
        self.fc2.build(hidden)

    def call(self, x):
        return self.fc2(ops.gelu(self.dwconv(self.fc1(x)), approximate=False))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "expansion": self.expansion}


@keras.saving.register_keras_serializable(package="segkit")
class MixTransformerBlock(keras.layers.Layer):
    """Pre-norm residual block: x + attention(norm1(x)), then x + feed-forward(norm2(x)), each branch dropped
    per sample with probability `drop_path` while training (stochastic depth).

    For `models.flops` and `models.receptive_field`: `count_macs` gives its multiply-accumulates, and
    `attends_globally` says every output position reads every input position."""

    attends_globally = True

    def __init__(self, dim, num_heads, reduction, drop_path=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.reduction, self.drop_path = dim, num_heads, reduction, drop_path
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(epsilon=BLOCK_EPSILON, dtype=policy, name="norm1")
        self.attn = EfficientSelfAttention(dim, num_heads, reduction, dtype=policy, name="attn")
        self.norm2 = keras.layers.LayerNormalization(epsilon=BLOCK_EPSILON, dtype=policy, name="norm2")
        self.mlp = MixFeedForward(dim, dtype=policy, name="mlp")
        self.drop = keras.layers.Dropout(drop_path, noise_shape=(None, 1, 1, 1), dtype=policy, name="drop_path")

    def build(self, input_shape):
        for layer in (self.norm1, self.attn, self.norm2, self.mlp):
            layer.build(input_shape)

    def call(self, x, training=None):
        x = x + self.drop(self.attn(self.norm1(x)), training=training)
        return x + self.drop(self.mlp(self.norm2(x)), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def count_macs(self, input_shape):
        """Multiply-accumulates per image: projections, key/value reduction, attention, feed-forward."""
        tokens, dim, hidden = input_shape[1] * input_shape[2], self.dim, self.dim * self.mlp.expansion
        context = tokens // self.reduction ** 2
        projections = 2 * tokens * dim * dim + 2 * context * dim * dim
        reduction = tokens * dim * dim if self.reduction > 1 else 0
        attention = 2 * tokens * context * dim
        feed_forward = 2 * tokens * dim * hidden + tokens * hidden * 9
        return projections + reduction + attention + feed_forward

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads, "reduction": self.reduction,
                "drop_path": self.drop_path}


def build_mit(depths, dims, input_shape=(None, None, 3), name="mit"):
    """A MiT with `depths` blocks and `dims` channels per stage (`MIT_VARIANTS` holds SegFormer's) as a functional
    model whose outputs are its stage maps at strides 4, 8, 16 and 32 (each after the stage's layer norm)."""
    rates = np.linspace(0.0, MAX_DROP_PATH, sum(depths)).tolist()
    inputs = keras.Input(input_shape)
    x, outputs, block = inputs, [], 0
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        x = keras.layers.ZeroPadding2D(PATCH_SIZES[stage] // 2, name=f"patch_pad_{stage}")(x)
        x = keras.layers.Conv2D(dim, PATCH_SIZES[stage], strides=PATCH_STRIDES[stage], name=f"patch_embed_{stage}")(x)
        x = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name=f"patch_norm_{stage}")(x)
        for index in range(depth):
            x = MixTransformerBlock(dim, NUM_HEADS[stage], REDUCTION_RATIOS[stage], rates[block],
                                    name=f"block_{stage}_{index}")(x)
            block += 1
        x = keras.layers.LayerNormalization(epsilon=NORM_EPSILON, name=f"norm_{stage}")(x)
        outputs.append(x)
    return keras.Model(inputs, outputs, name=name)


# keras-hub presets ---------------------------------------------------------------------------------------------------

HUB_WEIGHTS, HUB_CONFIG = "model.weights.h5", "config.json"
HUB_NAMES = {"patch_embed": ("overlapping_patching_and_embedding", "/proj"),
             "patch_norm": ("overlapping_patching_and_embedding", "/norm"), "norm": ("layer_normalization", ""),
             "block": ("hierarchical_transformer_encoder", "")}
"""Our layer name prefix -> (keras-hub's layer key, sublayer path) in a MiTBackbone weights file."""
BLOCK_SUBLAYERS = ("norm1", "attn/q", "attn/k", "attn/v", "attn/proj", "attn/sr", "attn/norm", "norm2", "mlp/fc1",
                   "mlp/dwconv", "mlp/fc2")


def hub_weight_paths(model):
    """[(variable, path in a keras-hub MiTBackbone `model.weights.h5`)] for every weight of `build_mit`'s model.

    Keras keys a functional model's layers in its weights file by their class's snake-case name, numbered from the
    second one in graph order (`hierarchical_transformer_encoder_7`); inside, sublayers by attribute name. Our
    blocks hold keras-hub's sublayers under the same names (its dropouts carry no weights)."""
    pairs, counts = [], {}
    for layer in model.layers:
        kind = layer.name.rsplit("_", 2 if layer.name.startswith("block_") else 1)[0]
        if kind not in HUB_NAMES or not layer.weights:
            continue
        key, inner = HUB_NAMES[kind]
        index = counts[kind] = counts.get(kind, -1) + 1
        prefix = f"layers/{key}" + (f"_{index}" if index else "")
        if kind != "block":
            pairs += [(variable, f"{prefix}{inner}/vars/{i}") for i, variable in enumerate(layer.weights)]
            continue
        for path in BLOCK_SUBLAYERS:
            sublayer = layer
            for attribute in path.split("/"):
                sublayer = getattr(sublayer, attribute, None)
            if sublayer is not None:
                pairs += [(variable, f"{prefix}/{path}/vars/{i}") for i, variable in enumerate(sublayer.weights)]
    return pairs


def load_hub_preset(model, variant, preset, error):
    """Load the weights of a keras-hub MiT preset (a folder, or its `model.weights.h5`) into `build_mit`'s model;
    return the number of tensors loaded. `error` (an exception class) carries one-line problems."""
    preset = pathlib.Path(preset)
    weights_file = preset / HUB_WEIGHTS if preset.is_dir() else preset
    config_file = weights_file.parent / HUB_CONFIG
    if config_file.is_file():
        config = json.loads(config_file.read_text()).get("config", {})
        depths, dims = MIT_VARIANTS[variant]
        found = (tuple(config.get("layerwise_depths", ())), tuple(config.get("hidden_dims", ())))
        if found != (depths, dims):
            raise error(f"{config_file}: this preset is a MiT with blocks {list(found[0])} and channels "
                        f"{list(found[1])}, not {variant} ({list(depths)}, {list(dims)}): pick the matching encoder")
    if not weights_file.is_file():
        raise error(f"{weights_file}: keras-hub preset weights not found (a preset folder holds {HUB_CONFIG} and "
                    f"{HUB_WEIGHTS})")
    pairs = hub_weight_paths(model)
    try:
        with h5py.File(weights_file, "r") as file:
            missing = [path for _, path in pairs if path not in file]
            if missing:
                raise error(f"{weights_file}: not a keras-hub {variant} weights file ({len(missing)} of "
                            f"{len(pairs)} tensors missing, e.g. {missing[0]})")
            arrays = [np.asarray(file[path]) for _, path in pairs]
    except OSError as err:
        raise error(f"{weights_file}: not a readable weights file ({err})") from None
    for (variable, path), array in zip(pairs, arrays):
        if tuple(variable.shape) != array.shape:
            raise error(f"{weights_file}: {path} has shape {array.shape}, {variant} needs {tuple(variable.shape)}")
    for (variable, _), array in zip(pairs, arrays):
        variable.assign(array)
    return len(pairs)
