"""Conv2D weight gradients of app/training/conv_gradients.py: the same gradients as TensorFlow's own for every
kernel shape, stride, padding and channel count, the kernels each case gets in the graph, and the choice per CPU
kind by compile_model."""
import types

import keras
import numpy as np
import pandas as pd
import pytest

from app.config.loading import load_config, parse_override
from app.runtime.devices import conv_weight_gradients_wanted, cpu_flags
from app.training.conv_gradients import MIN_MATMUL_CHANNELS, conv_weight_gradients
from app.training.model import build_model, compile_model

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow gradient")


@pytest.fixture
def restore():
    was_on = conv_weight_gradients()
    yield
    conv_weight_gradients(was_on)


def gradients(kernel=(3, 3, 16, 24), strides=1, padding="SAME", dilations=1, size=(17, 19), dtype=tf.float32):
    """(input gradient, weight gradient) of one convolution, traced with an unknown batch size, and the types of
    the ops that compute the weight gradient in its graph."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, *size, kernel[2])), dtype)
    w = tf.Variable(rng.normal(size=kernel).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([None, *size, kernel[2]], dtype)])
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, tf.cast(w, dtype), strides, padding, dilations=dilations)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.sin(tf.cast(y, tf.float32)))
        return tape.gradient(loss, [x, w])

    graph = step.get_concrete_function().graph
    kinds = sorted({op.type if op.type == "MatMul" else f"{op.type}:{op.get_attr('data_format').decode()}"
                    for op in graph.get_operations() if op.type in ("MatMul", "Conv2DBackpropFilter")})
    return [g.numpy().astype("float32") for g in step(x)], kinds


CASES = [  # kernel, strides, padding, the weight-gradient ops when ours are on
    ((3, 3, 16, 24), 1, "SAME", ["MatMul"]),
    ((3, 3, 24, 16), 1, "SAME", ["MatMul"]),  # more input than output channels: the gradient is stacked
    ((3, 3, 16, 24), 1, "VALID", ["MatMul"]),
    ((5, 5, 8, 8), 1, "SAME", ["MatMul"]),
    ((1, 1, 32, 12), 1, "SAME", ["MatMul"]),
    ((1, 3, 8, 16), 1, "SAME", ["MatMul"]),
    ((2, 2, 16, 8), 1, "SAME", ["MatMul"]),  # even kernels pad one more row and column after than before
    ((4, 2, 16, 8), 1, "VALID", ["MatMul"]),
    ((3, 3, 3, 16), 1, "SAME", ["Conv2DBackpropFilter:NCHW"]),  # an RGB input layer: too few channels
    ((3, 3, 16, 24), 2, "SAME", ["Conv2DBackpropFilter:NCHW"]),
    ((3, 3, 16, 24), 2, "VALID", ["Conv2DBackpropFilter:NCHW"]),
]


@pytest.mark.parametrize("kernel, strides, padding, kinds", CASES)
def test_weight_gradients_equal_tensorflows_own(restore, kernel, strides, padding, kinds):
    conv_weight_gradients(False)
    (input_grad, weight_grad), own_kinds = gradients(kernel, strides, padding)
    assert own_kinds == ["Conv2DBackpropFilter:NHWC"]
    assert not conv_weight_gradients(True)
    (ours_input_grad, ours_weight_grad), ours_kinds = gradients(kernel, strides, padding)
    assert ours_kinds == kinds and conv_weight_gradients()
    np.testing.assert_allclose(ours_input_grad, input_grad, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours_weight_grad, weight_grad, rtol=1e-4, atol=1e-4 * np.abs(weight_grad).max())
    assert conv_weight_gradients(False) and gradients(kernel, strides, padding)[1] == own_kinds


def test_weight_gradients_equal_tensorflows_own_on_random_shapes(restore):
    rng = np.random.default_rng(27)
    for _ in range(6):
        k_h, k_w = rng.integers(1, 6, 2)
        kernel = (int(k_h), int(k_w), *map(int, rng.integers(MIN_MATMUL_CHANNELS, 40, 2)))
        size = tuple(int(n) for n in rng.integers(max(kernel[:2]), 24, 2))
        padding = str(rng.choice(["SAME", "VALID"]))
        conv_weight_gradients(False)
        (_, weight_grad), _ = gradients(kernel, 1, padding, size=size)
        conv_weight_gradients(True)
        (_, ours), kinds = gradients(kernel, 1, padding, size=size)
        assert kinds == ["MatMul"], (kernel, size, padding)
        np.testing.assert_allclose(ours, weight_grad, rtol=1e-4, atol=1e-4 * np.abs(weight_grad).max(),
                                   err_msg=f"{kernel} {size} {padding}")


def test_weight_gradients_traced_with_unknown_height_and_width_fit_every_size(restore):
    rng = np.random.default_rng(1)
    w = tf.Variable(rng.normal(size=(3, 3, 8, 16)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 8], tf.float32)])
    def weight_gradient(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME") ** 2)
        return tape.gradient(loss, w)

    conv_weight_gradients(True)
    for size in ((9, 13), (16, 5)):
        x = tf.constant(rng.normal(size=(2, *size, 8)), tf.float32)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME") ** 2)
        conv_weight_gradients(False)
        expected = tape.gradient(loss, w).numpy()  # eager: TensorFlow's own gradient
        conv_weight_gradients(True)
        np.testing.assert_allclose(weight_gradient(x).numpy(), expected, rtol=1e-4,
                                   atol=1e-4 * np.abs(expected).max())
    graph = weight_gradient.get_concrete_function().graph
    assert "MatMul" in {op.type for op in graph.get_operations()}


def test_the_matmul_threshold_is_on_the_smaller_channel_count(restore):
    conv_weight_gradients(True)
    assert gradients((3, 3, MIN_MATMUL_CHANNELS, 64))[1] == ["MatMul"]
    assert gradients((3, 3, 64, MIN_MATMUL_CHANNELS - 1))[1] == ["Conv2DBackpropFilter:NCHW"]


@pytest.mark.parametrize("options", [{"dilations": 2}, {"dtype": tf.bfloat16}])
def test_dilated_and_16_bit_convolutions_keep_tensorflows_gradient(restore, options):
    conv_weight_gradients(True)
    assert gradients(**options)[1] == ["Conv2DBackpropFilter:NHWC"]


def test_wanted_on_tensorflow_cpus_with_avx2_and_no_avx512():
    cpu = ["cpu:0"]
    assert conv_weight_gradients_wanted(cpu, {"avx2", "fma"}, {})
    assert not conv_weight_gradients_wanted(cpu, {"avx2", "avx512f"}, {})
    assert not conv_weight_gradients_wanted(cpu, {"sse4_2"}, {})
    assert not conv_weight_gradients_wanted(cpu, {"avx2"}, {"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert not conv_weight_gradients_wanted(["cpu:0", "gpu:0"], {"avx2"}, {})


def test_compile_model_turns_them_on_under_an_avx2_cap_only(restore, monkeypatch):
    config = load_config(overrides=[parse_override(o) for o in ("model.base_filters=4", "model.depth=2",
                                                                "train.precision=float32")])
    prepared = types.SimpleNamespace(frame=pd.DataFrame({"split": ["train"] * 8}), class_names=["a", "b"],
                                     encoding=types.SimpleNamespace(num_classes=2))
    flags = cpu_flags(cap="ALL")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    compile_model(build_model(config, 2), config, prepared)
    assert conv_weight_gradients() == ("avx2" in flags)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    compile_model(build_model(config, 2), config, prepared)
    assert conv_weight_gradients() == ("avx2" in flags and "avx512f" not in flags)
