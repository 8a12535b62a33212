"""Writes testdata/models/unsupported_op.onnx: a tiny conv net whose head uses an op qnas
does not model (NonMaxSuppression), for the CLI's error-path tests.
Run: /usr/bin/python3 testdata/gen/unsupported_op.py (Debian python3-onnx)."""
import os
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32) * 0.1, "conv.weight")
boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4, 4])
graph = helper.make_graph(
    [
        helper.make_node("Conv", ["input", "conv.weight"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("NonMaxSuppression", ["boxes", "r"], ["selected"], name="nms"),
    ],
    "unsupported_op",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8]), boxes],
    [helper.make_tensor_value_info("selected", TensorProto.INT64, ["K", 3])],
    [w],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qnas-testdata")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, os.path.join(here, "..", "models", "unsupported_op.onnx"))
