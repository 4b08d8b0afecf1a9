//! The few lines of protobuf encoding the ONNX and TensorBoard writers need (varints and the
//! four wire types), rather than a protobuf crate and its code generator: the messages are
//! few and written only, never read.

/// One protobuf message being written: fields appended in any order, by field number.
#[derive(Default)]
pub struct Message(pub Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u64, wire_type: u64) {
        self.varint(field << 3 | wire_type);
    }

    /// An integer field (int64, enum): wire type 0.
    pub fn int(mut self, field: u64, v: u64) -> Self {
        self.key(field, 0);
        self.varint(v);
        self
    }

    /// A float field: wire type 5, little-endian.
    pub fn float(mut self, field: u64, v: f32) -> Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A double field: wire type 1, little-endian.
    pub fn double(mut self, field: u64, v: f64) -> Self {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A bytes, string, packed or message field: wire type 2, length first.
    pub fn bytes(mut self, field: u64, b: &[u8]) -> Self {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    /// A string field.
    pub fn string(self, field: u64, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }

    /// A message field.
    pub fn message(self, field: u64, m: Message) -> Self {
        self.bytes(field, &m.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes from protobuf's encoding rules (varints of 1, 2 and 3 bytes, keys of
    /// each wire type), checked by hand against the specification's examples.
    #[test]
    fn fields_are_encoded_as_protobuf_specifies() {
        assert_eq!(Message::default().int(1, 150).0, [0x08, 0x96, 0x01]);
        assert_eq!(Message::default().int(20, 1).0, [0xa0, 0x01, 0x01]);
        assert_eq!(Message::default().string(2, "testing").0[..2], [0x12, 0x07]);
        assert_eq!(
            Message::default().float(2, 1.0).0,
            [0x15, 0x00, 0x00, 0x80, 0x3f]
        );
        assert_eq!(
            Message::default().double(1, 1.0).0,
            [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]
        );
        assert_eq!(
            Message::default().int(1, 1 << 14).0,
            [0x08, 0x80, 0x80, 0x01]
        );
    }
}
