"""Runs an exported ONNX model the way a user would, for crates/mlp-cli/tests/onnx.rs.

    python onnx_check.py MODEL.onnx INPUTS.f32 PROBABILITIES.f32

Checks the model with onnx.checker (full check, shape inference included), runs it in
onnxruntime on INPUTS (little-endian float32, rows of the model's input width), writes the
probabilities to PROBABILITIES as little-endian float32, and prints one JSON object: the
graph's inputs and outputs (name, shape, type) and its metadata_props.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime

model_path, inputs_path, out_path = sys.argv[1:4]
model = onnx.load(model_path)
onnx.checker.check_model(model, full_check=True)
session = onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"])
(image,) = session.get_inputs()
(probabilities,) = session.get_outputs()
x = np.fromfile(inputs_path, dtype="<f4").reshape(-1, image.shape[1])
(p,) = session.run([probabilities.name], {image.name: x})
p.astype("<f4").tofile(out_path)
print(json.dumps({
    "ir_version": model.ir_version,
    "opset": [o.version for o in model.opset_import],
    "inputs": [[i.name, i.shape, i.type] for i in session.get_inputs()],
    "outputs": [[o.name, o.shape, o.type] for o in session.get_outputs()],
    "ops": [n.op_type for n in model.graph.node],
    "metadata": {p.key: p.value for p in model.metadata_props},
}))
