"""PyTorch's side of the torch-layout safetensors files, for crates/mlp-cli/tests/torch_layout.rs.

The arithmetic is PyTorch's nn.Sequential(nn.Linear(I, H), activation, nn.Linear(H, C)),
written with numpy (nn.Linear computes x @ weight.T + bias): PyTorch itself is too large
for the test environment.

    python torch_layout.py read FILE.safetensors X.f32 P.f32
        loads FILE as safetensors.torch.load_file would (its state dict), runs the network
        on X (little-endian float32 rows), writes the softmax probabilities to P, prints
        the tensors' names and shapes and the metadata as JSON
    python torch_layout.py write FILE.safetensors INPUTS HIDDEN CLASSES X.f32 P.f32
        writes a state dict the way safetensors.torch.save_file does for such a network
        (metadata {"format": "pt"}: no activation), with seeded random weights; writes the
        probabilities of the network with tanh on X to P
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, np.float32(0.01) * z),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
}


def probabilities(state, activation, x):
    a1 = ACTIVATIONS[activation](x @ state["0.weight"].T + state["0.bias"])
    z2 = a1 @ state["2.weight"].T + state["2.bias"]
    e = np.exp(z2 - z2.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype("<f4")


mode, path = sys.argv[1:3]
if mode == "read":
    x_path, p_path = sys.argv[3:5]
    state = load_file(path)
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    metadata = header.get("__metadata__", {})
    x = np.fromfile(x_path, dtype="<f4").reshape(-1, state["0.weight"].shape[1])
    probabilities(state, metadata["activation"], x).tofile(p_path)
    print(json.dumps({
        "tensors": {k: [str(v.dtype), list(v.shape)] for k, v in sorted(state.items())},
        "metadata": metadata,
    }))
else:
    inputs, hidden, classes = map(int, sys.argv[3:6])
    x_path, p_path = sys.argv[6:8]
    rng = np.random.default_rng(0)
    f = lambda *shape: rng.normal(0, 0.3, shape).astype(np.float32)
    state = {
        "0.weight": f(hidden, inputs),
        "0.bias": f(hidden),
        "2.weight": f(classes, hidden),
        "2.bias": f(classes),
    }
    save_file(state, path, metadata={"format": "pt"})
    x = np.fromfile(x_path, dtype="<f4").reshape(-1, inputs)
    probabilities(state, "tanh", x).tofile(p_path)
