//! The network as an ONNX model (`mlp export --format onnx`), for onnxruntime, tract, Netron
//! and the tools built on them: IR version 7 and opset 13 (readers from ONNX 1.8 on).
//!
//! ```text
//! image [N, 784] ─ Gemm(W1, b1) ─ Relu | LeakyRelu(α) | Tanh | Sigmoid ─ Gemm(W2, b2) ─ Softmax(axis 1) ─ probabilities [N, 10]
//! ```
//! `image` is float32, pixels in [0, 1] row by row (as the IDX bytes / 255), with a symbolic
//! batch dimension `N`. The class names and, where the model file sits in a run folder, the
//! training settings of its config.json go into `metadata_props`.
//!
//! The protobuf is written with `protobuf.rs`: about ten kinds of message, each a handful of
//! fields. Field numbers are onnx.proto's.

use mlp_core::{Activation, Mlp};
use mlp_train::SavedModel;

use crate::protobuf::Message;

/// ONNX's IR version 7 (ONNX 1.7) and the operator set used (ONNX 1.8).
const IR_VERSION: u64 = 7;
const OPSET: u64 = 13;
/// `TensorProto.DataType.FLOAT` and `AttributeProto.AttributeType` FLOAT / INT.
const FLOAT: u64 = 1;
const ATTRIBUTE_FLOAT: u64 = 1;
const ATTRIBUTE_INT: u64 = 2;

/// A float tensor of `dims`, its values as raw little-endian data (TensorProto).
fn tensor(name: &str, dims: &[usize], values: &[f32]) -> Message {
    let mut t = Message::default();
    for &d in dims {
        t = t.int(1, d as u64); // dims
    }
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.int(2, FLOAT).string(8, name).bytes(9, &raw) // data_type, name, raw_data
}

/// A graph input or output: float32 of shape [N, width], N symbolic (ValueInfoProto).
fn batch_of(name: &str, width: usize) -> Message {
    let shape = Message::default()
        .message(1, Message::default().string(2, "N")) // dim { dim_param }
        .message(1, Message::default().int(1, width as u64)); // dim { dim_value }
    let tensor_type = Message::default().int(1, FLOAT).message(2, shape); // elem_type, shape
    let type_proto = Message::default().message(1, tensor_type); // tensor_type
    Message::default().string(1, name).message(2, type_proto)
}

/// An operator (NodeProto) from `inputs` to one `output`, with its attributes.
fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<Message>) -> Message {
    let mut n = Message::default();
    for input in inputs {
        n = n.string(1, input);
    }
    n = n.string(2, output).string(3, output).string(4, op); // output, name, op_type
    for a in attributes {
        n = n.message(5, a);
    }
    n
}

fn float_attribute(name: &str, v: f32) -> Message {
    Message::default()
        .string(1, name)
        .float(2, v)
        .int(20, ATTRIBUTE_FLOAT)
}

fn int_attribute(name: &str, v: u64) -> Message {
    Message::default()
        .string(1, name)
        .int(3, v)
        .int(20, ATTRIBUTE_INT)
}

/// The activation's operator: Relu, LeakyRelu (with its slope), Tanh or Sigmoid.
fn activation_node(activation: Activation) -> Message {
    let (op, attributes) = match activation {
        Activation::Relu => ("Relu", vec![]),
        Activation::LeakyRelu => (
            "LeakyRelu",
            vec![float_attribute(
                "alpha",
                mlp_core::activation::LEAKY_RELU_SLOPE,
            )],
        ),
        Activation::Tanh => ("Tanh", vec![]),
        Activation::Sigmoid => ("Sigmoid", vec![]),
    };
    node(op, &["z1"], "a1", attributes)
}

/// The ONNX model of `saved`, with `metadata` (key, value) pairs besides the class names.
pub fn to_onnx(saved: &SavedModel, metadata: &[(String, String)]) -> Vec<u8> {
    let model: &Mlp = &saved.model;
    let s = model.shape();
    let [(_, w1), (_, b1), (_, w2), (_, b2)] = model.named_parameters();
    let graph = Message::default()
        .message(1, node("Gemm", &["image", "W1", "b1"], "z1", vec![]))
        .message(1, activation_node(model.activation))
        .message(1, node("Gemm", &["a1", "W2", "b2"], "z2", vec![]))
        .message(
            1,
            node(
                "Softmax",
                &["z2"],
                "probabilities",
                vec![int_attribute("axis", 1)],
            ),
        )
        .string(2, &format!("fmnist-mlp {s}"))
        .message(5, tensor("W1", &[s.inputs, s.hidden], w1))
        .message(5, tensor("b1", &[s.hidden], b1))
        .message(5, tensor("W2", &[s.hidden, s.classes], w2))
        .message(5, tensor("b2", &[s.classes], b2))
        .string(
            10,
            "image: float32 [N, inputs], pixels in [0, 1] (IDX bytes / 255), row by row; \
             probabilities: [N, classes], the softmax of the logits",
        )
        .message(11, batch_of("image", s.inputs))
        .message(12, batch_of("probabilities", s.classes));
    let mut onnx = Message::default()
        .int(1, IR_VERSION)
        .string(2, "fmnist-mlp")
        .string(3, env!("CARGO_PKG_VERSION"))
        .message(7, graph)
        .message(8, Message::default().string(1, "").int(2, OPSET));
    let class_names = serde_json::to_string(&saved.class_names).expect("strings serialise");
    let entries = [
        ("class_names".to_owned(), class_names),
        ("activation".to_owned(), model.activation.name().to_owned()),
        ("shape".to_owned(), s.to_string()),
    ];
    for (key, value) in entries.iter().chain(metadata) {
        onnx = onnx.message(14, Message::default().string(1, key).string(2, value));
    }
    onnx.0
}
