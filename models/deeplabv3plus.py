"""DeepLabV3+.

Chen et al., 2018, "Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation".
"""
import keras

from models.blocks import check_input_size, conv_bn_relu, rebuilt_layer, segmentation_output
from models.layers import ResizeLike

BACKBONES = ("small", "resnet50", "mobilenetv2")
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
IMAGENET_MEAN_INTENSITY = 114.8


def deeplabv3plus_divisor(output_stride=16):
    """Height and width of a DeepLabV3+ input must be multiples of its output stride."""
    return output_stride


def build_deeplabv3plus(
    input_shape,
    num_classes,
    backbone="small",
    output_stride=16,
    base_filters=32,
    filters=256,
    low_level_filters=48,
    activation=None,
):
    """Build DeepLabV3+: an atrous encoder with ASPP, and a decoder fusing stride-4 low-level features.

    The encoder reaches `output_stride` and then replaces striding by dilation: the "small" backbone is
    a from-scratch conv stack; "resnet50" and "mobilenetv2" are keras.applications models (weights=None)
    rebuilt with their last stride(s) set to 1 and the following 3x3 convolutions dilated, so their
    pretrained weights (e.g. the "notop" .h5 files) still load by name through `get_model(weights_path=...)`.
    Their inputs are rescaled as they were trained: to [-1, 1] for MobileNetV2, to [0, 255] minus the
    mean ImageNet intensity for ResNet50 (keras' "caffe" mode also swaps RGB to BGR; that is not done).
    ASPP has a 1x1 branch, three 3x3 atrous branches (rates 6, 12, 18 at output stride 16, doubled
    at 8) and an image-pooling branch.

    Args:
        input_shape: tuple. (height, width, channels); height and width may be None.
        num_classes: int. Number of output channels (logits).
        backbone: str. "small", "resnet50" or "mobilenetv2". Defaults to "small".
        output_stride: int. 16 or 8. Defaults to 16.
        base_filters: int. Width of the first stage of the "small" backbone (ignored by the others).
            Defaults to 32.
        filters: int. Channels of the ASPP branches and the decoder convolutions. Defaults to 256.
        low_level_filters: int. Channels the low-level features are reduced to. Defaults to 48.
        activation: str. Output activation, e.g. "softmax"; None returns logits. Defaults to None.

    Example:
    >>> model = build_deeplabv3plus((64, 64, 3), 2, base_filters=4, filters=8, low_level_filters=4)
    >>> model.output_shape
    (None, 64, 64, 2)
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}: got {backbone!r}")
    if output_stride not in ASPP_RATES:
        raise ValueError(f"output_stride must be 8 or 16: got {output_stride}")
    check_input_size(
        input_shape, deeplabv3plus_divisor(output_stride), f"deeplabv3plus with output_stride {output_stride}"
    )

    inputs = keras.Input(shape=input_shape, name="image")
    if backbone == "small":
        low_level, features = _small_backbone(inputs, base_filters, output_stride)
    else:
        low_level, features = _applications_backbone(inputs, backbone, output_stride)

    x = _aspp(features, filters, ASPP_RATES[output_stride])
    low_level = conv_bn_relu(low_level, low_level_filters, 1, name="decoder_low_level")
    x = ResizeLike(name="decoder_upsample")([x, low_level])
    x = keras.layers.Concatenate(name="decoder_concat")([x, low_level])
    x = conv_bn_relu(x, filters, name="decoder_a")
    x = conv_bn_relu(x, filters, name="decoder_b")
    x = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="classifier")(x)
    logits = ResizeLike(dtype="float32", name="logits")([x, inputs])
    return keras.Model(inputs, segmentation_output(logits, activation), name="deeplabv3plus")


def _small_backbone(x, base_filters, output_stride):
    """Plain conv-BN-ReLU stages; returns (stride-4 features, output_stride features)."""
    x = conv_bn_relu(x, base_filters, strides=2, name="stem_a")
    x = conv_bn_relu(x, base_filters, name="stem_b")
    x = conv_bn_relu(x, 2 * base_filters, strides=2, name="stage1_a")
    low_level = conv_bn_relu(x, 2 * base_filters, name="stage1_b")
    x = conv_bn_relu(low_level, 4 * base_filters, strides=2, name="stage2_a")
    x = conv_bn_relu(x, 4 * base_filters, name="stage2_b")
    rate = 1
    for stage in (3, 4):
        stride = 2 if 2 ** (stage + 1) <= output_stride else 1
        rate = rate if stride == 2 else 2 * rate
        x = conv_bn_relu(x, 8 * base_filters, strides=stride, dilation_rate=rate, name=f"stage{stage}_a")
        x = conv_bn_relu(x, 8 * base_filters, dilation_rate=rate, name=f"stage{stage}_b")
    return low_level, x


def _applications_backbone(inputs, backbone, output_stride):
    """keras.applications backbone rebuilt with dilation; returns (stride-4 features, output_stride features)."""
    if backbone == "resnet50":
        x = keras.layers.Rescaling(255.0, offset=-IMAGENET_MEAN_INTENSITY, name="preprocess")(inputs)
        base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=inputs.shape[1:])
        changes = _resnet50_dilation(output_stride)
        low_level, high_level = "conv2_block3_out", "conv5_block3_out"
    else:
        x = keras.layers.Rescaling(2.0, offset=-1.0, name="preprocess")(inputs)
        base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=inputs.shape[1:])
        changes = _mobilenetv2_dilation(output_stride)
        low_level, high_level = "block_3_expand_relu", "out_relu"

    model = keras.models.clone_model(base, input_tensors=x,
                                     clone_function=lambda layer: rebuilt_layer(layer, changes.get(layer.name)))
    return model.get_layer(low_level).output, model.get_layer(high_level).output


def _resnet50_dilation(output_stride):
    """Config changes making ResNet50's stages past `output_stride` atrous instead of strided."""
    changes, stride, rate = {}, 4, 1
    for stage, blocks in ((3, 4), (4, 6), (5, 3)):
        if stride < output_stride:
            stride *= 2
            continue
        rate *= 2
        changes[f"conv{stage}_block1_0_conv"] = changes[f"conv{stage}_block1_1_conv"] = {"strides": (1, 1)}
        for block in range(1, blocks + 1):
            changes[f"conv{stage}_block{block}_2_conv"] = {"dilation_rate": (rate, rate)}
    return changes


def _mobilenetv2_dilation(output_stride):
    """Config changes making MobileNetV2's blocks past `output_stride` atrous instead of strided."""
    changes, stride, rate = {}, 2, 1
    for block in range(1, 17):
        if block in (1, 3, 6, 13):
            if stride < output_stride:
                stride *= 2
                continue
            changes[f"block_{block}_pad"] = {"padding": ((rate, rate), (rate, rate))}
            changes[f"block_{block}_depthwise"] = {"strides": (1, 1), "dilation_rate": (rate, rate)}
            rate *= 2
        elif rate > 1:
            changes[f"block_{block}_depthwise"] = {"dilation_rate": (rate, rate)}
    return changes


def _aspp(x, filters, rates):
    """Atrous spatial pyramid pooling: 1x1, three atrous 3x3 and image-pooling branches, fused by a 1x1 conv."""
    branches = [conv_bn_relu(x, filters, 1, name="aspp_1x1")]
    branches += [conv_bn_relu(x, filters, 3, dilation_rate=rate, name=f"aspp_rate{rate}") for rate in rates]
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
    pooled = conv_bn_relu(pooled, filters, 1, name="aspp_pool_proj")
    branches.append(ResizeLike(name="aspp_pool_upsample")([pooled, x]))
    x = keras.layers.Concatenate(name="aspp_concat")(branches)
    return conv_bn_relu(x, filters, 1, name="aspp_proj")
