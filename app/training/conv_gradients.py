"""Convolution weight gradients computed in NCHW, for x86 CPUs without AVX-512 (TensorFlow backend only).

TensorFlow hands oneDNN plain NHWC tensors. With AVX2 only, oneDNN's backward-weights kernel for that layout
(`jit:avx2` on `acdb`) is most of a float32 training step and about 5x slower per call than the one PyTorch
gets on its blocked NCHW layout (360 ms against 72 ms for a 4x256x256, 32->32 3x3 layer). Given NCHW tensors,
oneDNN computes the same gradient as im2col + GEMM (`x64:gemm:jit`): 1.1-1.9x faster per layer with the
transposes, and the 7.8 M-parameter U-Net of `benchmarks/speed.py` trained 1.18x faster (median of 10 alternated
rounds under the AVX2 cap, see docs/speed.md). With AVX-512 the NHWC kernel is fast, so this stays off there
(`app.runtime.devices.nchw_weight_gradients_wanted` decides).

`nchw_weight_gradients(True)` swaps TensorFlow's registered gradient of the `Conv2D` op for one that returns
the same input gradient and the weight gradient of `Conv2DBackpropFilter` in NCHW (to float32 rounding); it
acts on training functions traced afterwards. Dilated convolutions, explicit paddings and 16-bit compute keep
the NHWC kernel. The NCHW kernel exists only with oneDNN (TensorFlow's default on x86; not with
`TF_ENABLE_ONEDNN_OPTS=0`).
The swap edits TensorFlow's gradient registry (`ops._gradient_registry`, a private table: TensorFlow has no
public way to replace a built-in op's gradient), and `nchw_weight_gradients(False)` restores the original.
"""
_ORIGINAL = {}


def _registry_entry():
    from tensorflow.python.framework import ops as tf_ops

    return tf_ops._gradient_registry._registry["Conv2D"]


def _conv2d_gradient_nchw(op, grad):
    import tensorflow as tf

    input_grad, weight_grad = _ORIGINAL["Conv2D"](op, grad)
    padding = op.get_attr("padding").decode()
    if (op.get_attr("data_format") != b"NHWC" or list(op.get_attr("dilations")) != [1, 1, 1, 1]
            or padding not in ("SAME", "VALID") or op.inputs[0].dtype != tf.float32):
        return input_grad, weight_grad
    inputs, kernel = op.inputs
    _, stride_h, stride_w, _ = op.get_attr("strides")
    weight_grad = tf.raw_ops.Conv2DBackpropFilter(
        input=tf.transpose(inputs, [0, 3, 1, 2]), filter_sizes=tf.shape(kernel),
        out_backprop=tf.transpose(grad, [0, 3, 1, 2]), strides=[1, 1, stride_h, stride_w], padding=padding,
        data_format="NCHW")
    return input_grad, weight_grad


def nchw_weight_gradients(enable=None):
    """Compute Conv2D weight gradients in NCHW (True) or with TensorFlow's own NHWC gradient (False); None changes
    nothing.

    Returns:
        bool. Whether the NCHW gradient was on before the call.

    Example:
    >>> was_on = nchw_weight_gradients(True)
    >>> nchw_weight_gradients(was_on)
    True
    """
    entry = _registry_entry()
    was_on = entry["type"] is _conv2d_gradient_nchw
    if enable and not was_on:
        _ORIGINAL["Conv2D"] = entry["type"]
        entry["type"] = _conv2d_gradient_nchw
    elif enable is not None and not enable and was_on:
        entry["type"] = _ORIGINAL["Conv2D"]
    return was_on
