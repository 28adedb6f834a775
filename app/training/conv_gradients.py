"""Convolution weight gradients for x86 CPUs without AVX-512 (TensorFlow backend only).

TensorFlow hands oneDNN plain NHWC tensors. With AVX2 only, oneDNN's backward-weights kernel for that layout
(`jit:avx2` on `acdb`) is most of a float32 training step and about 5x slower per call than the one PyTorch
gets on its blocked NCHW layout (360 ms against 72 ms for a 4x256x256, 32->32 3x3 layer). So the weight gradient
of a stride-1 `Conv2D` is computed here as k_h matmuls over row-shifted views of the flattened tensors
(`_shifted_matmul_weight_gradient`): oneDNN's matmul runs them near the FMA peak, 1.4-2x faster per layer than
the NCHW kernel (`x64:gemm:jit`, im2col + GEMM) and up to 3x faster than NHWC's. Strided convolutions and
layers with under 8 input or output channels take `Conv2DBackpropFilter` on transposed NCHW tensors instead.
The 7.8 M-parameter U-Net of `benchmarks/speed.py` trains 1.32x faster than with TensorFlow's own gradient
(docs/speed.md). With AVX-512 the NHWC kernel is faster than both, so this stays off there
(`app.runtime.devices.conv_weight_gradients_wanted` decides).

`conv_weight_gradients(True)` swaps TensorFlow's registered gradient of the `Conv2D` op for one that returns the
same input gradient and this weight gradient (equal to float32 rounding); it acts on training functions traced
afterwards. Dilated convolutions, explicit paddings and 16-bit compute keep TensorFlow's own gradient. The NCHW
kernel exists only with oneDNN (TensorFlow's default on x86; not with `TF_ENABLE_ONEDNN_OPTS=0`).
The swap edits TensorFlow's gradient registry (`ops._gradient_registry`, a private table: TensorFlow has no
public way to replace a built-in op's gradient), and `conv_weight_gradients(False)` restores the original.
"""
_ORIGINAL = {}
MIN_MATMUL_CHANNELS = 8
"""Below this many input or output channels a matmul fills too little of a vector register: NCHW is faster."""


def _registry_entry():
    from tensorflow.python.framework import ops as tf_ops

    return tf_ops._gradient_registry._registry["Conv2D"]


def _shifted_matmul_weight_gradient(inputs, grad, kernel_shape, padding):
    """dL/dW of a stride-1 NHWC Conv2D as k_h matmuls over row-shifted views, without im2col.

    Both tensors are padded to one row pitch (the padded input width) and flattened to (pixels, channels); tap
    (i, j) of the kernel pairs input row r + i * pitch + j with gradient row r. Slices along the first axis of a
    flattened tensor share its buffer, so the only copies are the padding and k_w shifted copies of whichever
    tensor has fewer channels, stacked on the channel axis to widen each matmul.
    """
    import tensorflow as tf

    k_h, k_w, c_in, c_out = kernel_shape
    if padding == "SAME":
        inputs = tf.pad(inputs, [[0, 0], [(k_h - 1) // 2, k_h // 2], [(k_w - 1) // 2, k_w // 2], [0, 0]])
    shape = tf.shape(inputs)
    pitch = shape[2]
    grad = tf.pad(grad, [[0, 0], [0, k_h - 1], [0, k_w - 1], [0, 0]])  # to the padded input's height and width
    rows = shape[0] * shape[1] * pitch
    flat_in, flat_grad = tf.reshape(inputs, [rows, c_in]), tf.reshape(grad, [rows, c_out])
    span = rows - (k_h - 1) * pitch - (k_w - 1)  # gradient rows whose every tap lands inside the input
    taps = []
    if c_in <= c_out:  # k_w copies of the input, shifted up by j rows: one matmul per kernel row
        stacked = tf.concat([flat_in[j:j + rows - k_w + 1] for j in range(k_w)], axis=1)
        for i in range(k_h):
            taps.append(tf.reshape(tf.matmul(stacked[i * pitch:i * pitch + span], flat_grad[:span],
                                             transpose_a=True), [k_w, c_in, c_out]))
    else:  # k_w copies of the gradient, shifted down by j rows
        stacked = tf.concat([tf.pad(flat_grad[:span], [[j, k_w - 1 - j], [0, 0]]) for j in range(k_w)], axis=1)
        for i in range(k_h):
            product = tf.matmul(flat_in[i * pitch:i * pitch + span + k_w - 1], stacked, transpose_a=True)
            taps.append(tf.transpose(tf.reshape(product, [c_in, k_w, c_out]), [1, 0, 2]))
    return tf.stack(taps)


def _nchw_weight_gradient(inputs, grad, kernel, strides, padding):
    """dL/dW by `Conv2DBackpropFilter` on transposed NCHW tensors (oneDNN's im2col + GEMM kernel)."""
    import tensorflow as tf

    return tf.raw_ops.Conv2DBackpropFilter(
        input=tf.transpose(inputs, [0, 3, 1, 2]), filter_sizes=tf.shape(kernel),
        out_backprop=tf.transpose(grad, [0, 3, 1, 2]), strides=[1, 1, *strides], padding=padding,
        data_format="NCHW")


def _conv2d_gradient(op, grad):
    import tensorflow as tf

    padding = op.get_attr("padding").decode()
    if (op.get_attr("data_format") != b"NHWC" or list(op.get_attr("dilations")) != [1, 1, 1, 1]
            or padding not in ("SAME", "VALID") or op.inputs[0].dtype != tf.float32):
        return _ORIGINAL["Conv2D"](op, grad)
    inputs, kernel = op.inputs
    strides = op.get_attr("strides")
    input_grad = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(inputs), filter=kernel, out_backprop=grad,
                                                strides=strides, padding=padding)
    if strides[1:3] == [1, 1] and kernel.shape.is_fully_defined() and min(kernel.shape[2:]) >= MIN_MATMUL_CHANNELS:
        return input_grad, _shifted_matmul_weight_gradient(inputs, grad, kernel.shape.as_list(), padding)
    return input_grad, _nchw_weight_gradient(inputs, grad, kernel, strides[1:3], padding)


def conv_weight_gradients(enable=None):
    """Compute Conv2D weight gradients as above (True) or with TensorFlow's own NHWC gradient (False); None
    changes nothing.

    Returns:
        bool. Whether they were on before the call.

    Example:
    >>> was_on = conv_weight_gradients(True)
    >>> conv_weight_gradients(was_on)
    True
    """
    entry = _registry_entry()
    was_on = entry["type"] is _conv2d_gradient
    if enable and not was_on:
        _ORIGINAL["Conv2D"] = entry["type"]
        entry["type"] = _conv2d_gradient
    elif enable is not None and not enable and was_on:
        entry["type"] = _ORIGINAL["Conv2D"]
    return was_on
