"""NCHW weight gradients of Conv2D (app/training/conv_gradients.py): same gradients, the NCHW kernel in the graph,
and chosen per CPU kind by compile_model."""
import types

import keras
import numpy as np
import pandas as pd
import pytest

from app.config.loading import load_config, parse_override
from app.runtime.devices import cpu_flags, nchw_weight_gradients_wanted
from app.training.conv_gradients import nchw_weight_gradients
from app.training.model import build_model, compile_model

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a TensorFlow gradient")


@pytest.fixture
def restore():
    was_on = nchw_weight_gradients()
    yield
    nchw_weight_gradients(was_on)


def gradients(strides, padding, dilations=1):
    """(input gradient, weight gradient) of a 3x3 convolution and the data formats of its filter-gradient ops."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, 17, 19, 16)), tf.float32)
    w = tf.Variable(rng.normal(size=(3, 3, 16, 24)).astype("float32"))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, w, strides, padding, dilations=dilations)
            loss = tf.reduce_sum(y * tf.sin(y))
        return tape.gradient(loss, [x, w])

    graph = step.get_concrete_function().graph
    formats = [op.get_attr("data_format").decode() for op in graph.get_operations()
               if op.type == "Conv2DBackpropFilter"]
    return [g.numpy() for g in step()], formats


@pytest.mark.parametrize("strides, padding", [(1, "SAME"), (2, "SAME"), (1, "VALID"), (2, "VALID")])
def test_nchw_weight_gradients_equal_tensorflows_own(restore, strides, padding):
    nchw_weight_gradients(False)
    (input_grad, weight_grad), formats = gradients(strides, padding)
    assert formats == ["NHWC"]
    assert not nchw_weight_gradients(True)
    (nchw_input_grad, nchw_weight_grad), formats = gradients(strides, padding)
    assert "NCHW" in formats and nchw_weight_gradients()
    np.testing.assert_allclose(nchw_input_grad, input_grad, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(nchw_weight_grad, weight_grad, rtol=1e-4, atol=1e-2 * np.abs(weight_grad).max())
    assert nchw_weight_gradients(False) and gradients(strides, padding)[1] == ["NHWC"]


def test_dilated_convolutions_keep_the_nhwc_kernel(restore):
    nchw_weight_gradients(True)
    assert gradients(1, "SAME", dilations=2)[1] == ["NHWC"]


def test_wanted_on_tensorflow_cpus_with_avx2_and_no_avx512():
    cpu = ["cpu:0"]
    assert nchw_weight_gradients_wanted(cpu, {"avx2", "fma"}, {})
    assert not nchw_weight_gradients_wanted(cpu, {"avx2", "avx512f"}, {})
    assert not nchw_weight_gradients_wanted(cpu, {"sse4_2"}, {})
    assert not nchw_weight_gradients_wanted(cpu, {"avx2"}, {"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert not nchw_weight_gradients_wanted(["cpu:0", "gpu:0"], {"avx2"}, {})


def test_compile_model_turns_them_on_under_an_avx2_cap_only(restore, monkeypatch):
    config = load_config(overrides=[parse_override(o) for o in ("model.base_filters=4", "model.depth=2",
                                                                "train.precision=float32")])
    prepared = types.SimpleNamespace(frame=pd.DataFrame({"split": ["train"] * 8}), class_names=["a", "b"],
                                     encoding=types.SimpleNamespace(num_classes=2))
    flags = cpu_flags(cap="ALL")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    compile_model(build_model(config, 2), config, prepared)
    assert nchw_weight_gradients() == ("avx2" in flags)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    compile_model(build_model(config, 2), config, prepared)
    assert nchw_weight_gradients() == ("avx2" in flags and "avx512f" not in flags)
