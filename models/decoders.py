"""Decoders on a pretrained encoder's feature pyramid (smp style: `model.name` the decoder, `model.encoder` the
backbone from `models.encoders`): U-Net, FPN, DeepLabV3+ and a SegFormer all-MLP head.

Every builder takes float32 images in [0, 1] and returns float32 logits at the input size; the encoder is a
nested model named "encoder" (what `train.freeze_encoder_epochs`, `train.encoder_lr_scale` and
`model.encoder_from` act on). Height and width must be multiples of the encoder stride (32, or DeepLabV3+'s
`output_stride`).
"""
import math

import keras

from models.blocks import check_input_size, conv_bn_relu, segmentation_output
from models.deeplabv3plus import ASPP_RATES, _aspp
from models.encoders import build_encoder, encoder_divisor, load_encoder_from
from models.layers import ResizeLike

DEFAULT_ENCODER = "resnet50"


def encoder_model_divisor(encoder=DEFAULT_ENCODER, output_stride=32):
    """Height and width must be multiples of the encoder's stride (DeepLabV3+: of its output stride)."""
    return min(encoder_divisor(encoder), output_stride)


def _start(input_shape, name, encoder, encoder_weights, output_stride=32):
    check_input_size(input_shape, encoder_model_divisor(encoder, output_stride), f"{name} with encoder {encoder}")
    inputs = keras.Input(shape=input_shape, name="image")
    return inputs, build_encoder(encoder, inputs, encoder_weights, output_stride)


def _finish(inputs, x, num_classes, activation, name, encoder, encoder_from):
    x = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="classifier")(x)
    logits = ResizeLike(dtype="float32", name="logits")([x, inputs])
    model = keras.Model(inputs, segmentation_output(logits, activation), name=name)
    model.encoder_report = encoder.report
    if encoder_from:
        model.encoder_report = load_encoder_from(model, encoder_from)
    return model


def build_encoder_unet(input_shape, num_classes, encoder=DEFAULT_ENCODER, encoder_weights=None, encoder_from=None,
                       decoder_filters=(256, 128, 64, 32, 16), dropout=0.0, activation=None):
    """U-Net decoder on an encoder pyramid: from the deepest features, upsample, concatenate the skip at that
    stride, two conv-BN-ReLU; the last stage(s) go up to full resolution without a skip.

    Args:
        input_shape: tuple. (height, width, channels 1 or 3); height and width may be None.
        num_classes: int. Output channels (logits).
        encoder: str. A key of `models.encoders.ENCODERS` or "hub:<preset>".
        encoder_weights: str. None, "imagenet", an .h5 / .weights.h5 file or a keras-hub preset.
        encoder_from: str. A previous run folder whose model.keras initialises the encoder.
        decoder_filters: sequence of int. Channels of the decoder stages, deepest first (one per stride halving
            from 32 down to 1). Defaults to (256, 128, 64, 32, 16).
        dropout: float. Dropout before the classifier. Defaults to 0.
        activation: str. Output activation; None returns logits.

    Example:
    >>> model = build_encoder_unet((64, 64, 3), 2, "mobilenetv3_small", decoder_filters=(8, 8, 4, 4, 4))
    >>> model.output_shape
    (None, 64, 64, 2)
    """
    inputs, enc = _start(input_shape, "unet", encoder, encoder_weights)
    strides = sorted(enc.features, reverse=True)
    x = enc.features[strides[0]]
    stride = strides[0]
    for stage, filters in enumerate(decoder_filters):
        stride //= 2
        if stride < 1:
            break
        reference = enc.features.get(stride, inputs if stride == 1 else None)
        if reference is None:
            x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"decoder{stage}_upsample")(x)
        else:
            x = ResizeLike(name=f"decoder{stage}_upsample")([x, reference])
            if stride in enc.features:
                x = keras.layers.Concatenate(name=f"decoder{stage}_concat")([x, enc.features[stride]])
        x = conv_bn_relu(x, filters, name=f"decoder{stage}_a")
        x = conv_bn_relu(x, filters, name=f"decoder{stage}_b")
    if dropout:
        x = keras.layers.Dropout(dropout, name="decoder_dropout")(x)
    return _finish(inputs, x, num_classes, activation, "unet", enc, encoder_from)


def build_fpn(input_shape, num_classes, encoder=DEFAULT_ENCODER, encoder_weights=None, encoder_from=None,
              pyramid_filters=256, segmentation_filters=128, dropout=0.2, activation=None):
    """Feature Pyramid Network decoder (Lin et al., 2017; the semantic-segmentation head of Kirillov et al., 2019,
    "Panoptic FPN", as in smp): 1x1 laterals on strides 4-32, a top-down pathway of upsample-and-add, per level
    conv-BN-ReLU blocks upsampled to stride 4, summed, and a classifier upsampled to the input.

    Args:
        input_shape, num_classes, encoder, encoder_weights, encoder_from, activation: see `build_encoder_unet`.
        pyramid_filters: int. Channels of the pyramid. Defaults to 256.
        segmentation_filters: int. Channels of the per-level segmentation blocks. Defaults to 128.
        dropout: float. Spatial dropout before the classifier. Defaults to 0.2.

    Example:
    >>> model = build_fpn((64, 64, 3), 2, "mobilenetv3_small", pyramid_filters=8, segmentation_filters=4)
    >>> model.output_shape
    (None, 64, 64, 2)
    """
    inputs, enc = _start(input_shape, "fpn", encoder, encoder_weights)
    strides = [s for s in sorted(enc.features) if s >= 4]
    x, pyramid = None, {}
    for stride in reversed(strides):
        lateral = keras.layers.Conv2D(pyramid_filters, 1, name=f"fpn_lateral{stride}")(enc.features[stride])
        if x is not None:
            lateral = keras.layers.Add(name=f"fpn_add{stride}")(
                [ResizeLike("nearest", name=f"fpn_upsample{stride}")([x, lateral]), lateral])
        x = pyramid[stride] = lateral
    levels = []
    for stride in strides:
        y, upsamplings = pyramid[stride], int(math.log2(stride // strides[0]))
        for step in range(max(upsamplings, 1)):
            y = conv_bn_relu(y, segmentation_filters, name=f"fpn_seg{stride}_{step}")
            if upsamplings:
                y = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"fpn_seg{stride}_{step}_up")(y)
        levels.append(y)
    x = keras.layers.Add(name="fpn_merge")(levels) if len(levels) > 1 else levels[0]
    if dropout:
        x = keras.layers.SpatialDropout2D(dropout, name="fpn_dropout")(x)
    return _finish(inputs, x, num_classes, activation, "fpn", enc, encoder_from)


def build_encoder_deeplabv3plus(input_shape, num_classes, encoder=DEFAULT_ENCODER, encoder_weights=None,
                                encoder_from=None, output_stride=16, filters=256, low_level_filters=48,
                                activation=None):
    """DeepLabV3+ (Chen et al., 2018) on an encoder: its strides past `output_stride` become dilations
    (`models.encoders.dilation_changes`), ASPP on the deepest features, fused with the stride-4 features.

    Args:
        input_shape, num_classes, encoder, encoder_weights, encoder_from, activation: see `build_encoder_unet`.
        output_stride: int. 8, 16 or 32 (no dilation; keras-hub and ConvNeXt encoders). Defaults to 16.
        filters: int. ASPP and decoder channels. Defaults to 256.
        low_level_filters: int. Channels the stride-4 features are reduced to. Defaults to 48.

    Example:
    >>> model = build_encoder_deeplabv3plus((64, 64, 3), 2, "mobilenetv2", filters=8, low_level_filters=4)
    >>> model.output_shape
    (None, 64, 64, 2)
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32: got {output_stride}")
    inputs, enc = _start(input_shape, "deeplabv3plus", encoder, encoder_weights, output_stride)
    deepest = enc.features[max(enc.features)]
    x = _aspp(deepest, filters, ASPP_RATES.get(output_stride, (3, 6, 9)))
    low_level = conv_bn_relu(enc.features[4], low_level_filters, 1, name="decoder_low_level")
    x = ResizeLike(name="decoder_upsample")([x, low_level])
    x = keras.layers.Concatenate(name="decoder_concat")([x, low_level])
    x = conv_bn_relu(x, filters, name="decoder_a")
    x = conv_bn_relu(x, filters, name="decoder_b")
    return _finish(inputs, x, num_classes, activation, "deeplabv3plus", enc, encoder_from)


def build_segformer(input_shape, num_classes, encoder="mit_b0", encoder_weights=None, encoder_from=None,
                    embed_dim=256, dropout=0.1, activation=None):
    """SegFormer all-MLP head (Xie et al., 2021): each of strides 4-32 projected to `embed_dim` by a linear
    layer, resized to stride 4, concatenated, fused by a 1x1 conv-BN-ReLU, classified and upsampled.

    Args:
        input_shape, num_classes, encoder, encoder_weights, encoder_from, activation: see `build_encoder_unet`.
            The encoder defaults to "mit_b0" (keras-hub's MiT, SegFormer's own); any other works too.
        embed_dim: int. Channels of the projected features. Defaults to 256.
        dropout: float. Dropout before the classifier. Defaults to 0.1.
    """
    inputs, enc = _start(input_shape, "segformer", encoder, encoder_weights)
    strides = [s for s in sorted(enc.features) if s >= 4]
    finest = enc.features[strides[0]]
    projected = []
    for stride in strides:
        y = keras.layers.Dense(embed_dim, name=f"segformer_linear{stride}")(enc.features[stride])
        projected.append(y if stride == strides[0] else ResizeLike(name=f"segformer_upsample{stride}")([y, finest]))
    x = keras.layers.Concatenate(name="segformer_concat")(projected[::-1])
    x = conv_bn_relu(x, embed_dim, 1, name="segformer_fuse")
    if dropout:
        x = keras.layers.Dropout(dropout, name="segformer_dropout")(x)
    return _finish(inputs, x, num_classes, activation, "segformer", enc, encoder_from)


DECODERS = {
    "unet": build_encoder_unet,
    "fpn": build_fpn,
    "deeplabv3plus": build_encoder_deeplabv3plus,
    "segformer": build_segformer,
}
"""Decoders that take `encoder=`; `models.registry.get_model` routes a model name here when an encoder is set."""
