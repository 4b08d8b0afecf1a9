//! What the Fashion-MNIST data set is: its four files, their content digests and the class names.
//!
//! Digests are SHA-256 of the *decompressed* IDX bytes. Different distributors gzip the same
//! content differently (Debian's .gz files differ byte-wise from Zalando's), so the content, not
//! the archive, is what identifies the data. MNIST uses the very same file names, which makes
//! this check the only thing that stops silent training on the wrong data set.

/// Which half of the data set a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The 60,000 training examples.
    Train,
    /// The 10,000 test examples.
    Test,
}

/// Whether a file holds images or labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A rank-3 IDX array (count × 28 × 28).
    Images,
    /// A rank-1 IDX array of class indices.
    Labels,
}

/// One file of the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    /// The file name, as distributed (gzip-compressed).
    pub name: &'static str,
    /// The name of the decompressed file.
    pub raw_name: &'static str,
    /// Train or test.
    pub split: Split,
    /// Images or labels.
    pub kind: FileKind,
    /// Number of examples in the file.
    pub count: usize,
    /// SHA-256 of the decompressed content, lowercase hex.
    pub sha256: &'static str,
}

impl FileSpec {
    /// Rank of the IDX array in this file.
    pub fn rank(&self) -> usize {
        match self.kind {
            FileKind::Images => 3,
            FileKind::Labels => 1,
        }
    }
}

/// Image height and width in pixels.
pub const IMAGE_SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
/// Number of classes.
pub const CLASSES: usize = 10;

/// The ten class names, indexed by label.
pub const CLASS_NAMES: [&str; CLASSES] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The four files of Fashion-MNIST.
///
/// The digests were computed from the Debian package `dataset-fashion-mnist` with
/// `zcat FILE | sha256sum`; they match the decompressed content of Zalando's release.
pub const FILES: [FileSpec; 4] = [
    FileSpec {
        name: "train-images-idx3-ubyte.gz",
        raw_name: "train-images-idx3-ubyte",
        split: Split::Train,
        kind: FileKind::Images,
        count: 60_000,
        sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    },
    FileSpec {
        name: "train-labels-idx1-ubyte.gz",
        raw_name: "train-labels-idx1-ubyte",
        split: Split::Train,
        kind: FileKind::Labels,
        count: 60_000,
        sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
    FileSpec {
        name: "t10k-images-idx3-ubyte.gz",
        raw_name: "t10k-images-idx3-ubyte",
        split: Split::Test,
        kind: FileKind::Images,
        count: 10_000,
        sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    },
    FileSpec {
        name: "t10k-labels-idx1-ubyte.gz",
        raw_name: "t10k-labels-idx1-ubyte",
        split: Split::Test,
        kind: FileKind::Labels,
        count: 10_000,
        sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
];

/// The catalogue entry for a split's images or labels.
pub fn file_spec(split: Split, kind: FileKind) -> &'static FileSpec {
    FILES
        .iter()
        .find(|f| f.split == split && f.kind == kind)
        .expect("the catalogue lists images and labels for both splits")
}
