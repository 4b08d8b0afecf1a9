//! The errors this crate returns. Every variant names the file it is about, so a caller can
//! print it as one line and the user knows which file to look at.

use std::path::PathBuf;

/// What is wrong with the bytes of an IDX file, independent of where they came from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdxError {
    /// Fewer bytes than even the header needs.
    #[error("too short for an IDX header ({len} bytes)")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The first two bytes of an IDX file are zero; these are not.
    #[error("not an IDX file (magic bytes {found}{hint})")]
    BadMagic {
        /// The first four bytes, as hex.
        found: String,
        /// A guess at what the file is instead, e.g. ", looks like text or an HTML page".
        hint: &'static str,
    },
    /// The element type is not unsigned bytes (0x08), the only type Fashion-MNIST uses.
    #[error("unsupported IDX element type 0x{code:02x} (only unsigned bytes, 0x08, are supported)")]
    UnsupportedType {
        /// The type code from the header.
        code: u8,
    },
    /// The dimension count is not what the caller asked for (1 for labels, 3 for images).
    #[error("expected {expected} dimensions, found {found}")]
    WrongRank {
        /// Dimensions expected.
        expected: usize,
        /// Dimensions in the header.
        found: usize,
    },
    /// The dimensions multiply to more than fits in memory on any machine this runs on.
    #[error("dimensions {dims:?} describe an impossibly large payload")]
    TooLarge {
        /// The dimensions from the header.
        dims: Vec<u32>,
    },
    /// The payload is shorter than the header says.
    #[error("truncated: header promises {expected} payload bytes, file has {actual}")]
    Truncated {
        /// Payload bytes promised by the header.
        expected: usize,
        /// Payload bytes present.
        actual: usize,
    },
    /// Bytes follow the payload the header describes.
    #[error("trailing data: header promises {expected} payload bytes, file has more")]
    TrailingBytes {
        /// Payload bytes promised by the header.
        expected: usize,
    },
}

/// Any failure while loading or checking data files.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read (includes corrupt gzip streams).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file's bytes are not a valid IDX file of the expected kind.
    #[error("{}: {source}", path.display())]
    Idx {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: IdxError,
    },
    /// The file parsed, but its content is not the Fashion-MNIST file it is named after.
    #[error(
        "{}: content is not the Fashion-MNIST file of this name (sha256 {actual}, expected {expected}); \
         delete it and run `cargo xtask fetch-data`, or pass --allow-unverified to train on other IDX data",
        path.display()
    )]
    Digest {
        /// The file.
        path: PathBuf,
        /// The expected SHA-256 of the decompressed content, hex.
        expected: String,
        /// The actual SHA-256 of the decompressed content, hex.
        actual: String,
    },
    /// A data file is not present in the data directory.
    #[error("{}: not found (neither it nor its .gz form); fetch the data with `cargo xtask fetch-data`", path.display())]
    Missing {
        /// The path looked for (without .gz).
        path: PathBuf,
    },
    /// Images and labels disagree on how many examples there are.
    #[error("{}: {images} images, but {} has {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Number of images.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Number of labels.
        labels: usize,
    },
    /// A label is not a valid class index.
    #[error("{}: label {label} at index {index} is out of range (expected 0..{classes})", path.display())]
    LabelOutOfRange {
        /// The label file.
        path: PathBuf,
        /// Position of the first bad label.
        index: usize,
        /// Its value.
        label: u8,
        /// Number of classes.
        classes: usize,
    },
    /// The train and test images have different shapes.
    #[error("{}: images are {found:?} pixels, expected {expected:?} like the training images", path.display())]
    ShapeMismatch {
        /// The file whose shape differs.
        path: PathBuf,
        /// Expected (rows, columns).
        expected: (usize, usize),
        /// Found (rows, columns).
        found: (usize, usize),
    },
}
