"""Graph rewrites applied before int8 quantization (small hand-built graphs)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgesam_deploy.quantization.onnx_quant import spatial_means_to_global_pool  # noqa: E402


def _means_model(opset: int) -> onnx.ModelProto:
    """x [1, 8, 5, 7] -> (mean over H, W keepdims, mean over C keepdims, mean over H, W without keepdims)."""
    axes_hw, axes_c = np.array([2, 3], np.int64), np.array([1], np.int64)
    if opset >= 18:  # axes are an input
        inits = [numpy_helper.from_array(axes_hw, "hw"), numpy_helper.from_array(axes_c, "c")]
        nodes = [
            helper.make_node("ReduceMean", ["x", "hw"], ["se"], name="se"),
            helper.make_node("ReduceMean", ["x", "c"], ["ln"], name="ln"),
            helper.make_node("ReduceMean", ["x", "hw"], ["flat"], name="flat", keepdims=0),
        ]
    else:
        inits = []
        nodes = [
            helper.make_node("ReduceMean", ["x"], ["se"], name="se", axes=[2, 3]),
            helper.make_node("ReduceMean", ["x"], ["ln"], name="ln", axes=[1]),
            helper.make_node("ReduceMean", ["x"], ["flat"], name="flat", axes=[2, 3], keepdims=0),
        ]
    shapes = {"se": [1, 8, 1, 1], "ln": [1, 1, 5, 7], "flat": [1, 8]}
    outs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in shapes.items()
    ]
    graph = helper.make_graph(
        nodes,
        "means",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 7])],
        outs,
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("opset", [17, 20])
def test_spatial_means_become_global_pools(opset):
    model = _means_model(opset)
    x = np.random.default_rng(0).standard_normal((1, 8, 5, 7)).astype(np.float32)
    before = ort.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, {"x": x})
    model, replaced = spatial_means_to_global_pool(model)
    assert replaced == 1
    assert [n.op_type for n in model.graph.node] == [
        "GlobalAveragePool",
        "ReduceMean",
        "ReduceMean",
    ]
    onnx.checker.check_model(model, full_check=True)
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
