//! Loading Fashion-MNIST for the commands, and presenting it to the trainer.

use anyhow::anyhow;
use fmnist_data::{DataError, Dataset, Split, Verify};
use mlp_train::ByteImages;

use crate::cli::{DEFAULT_DATA_DIR, DataArgs};

/// A Fashion-MNIST split as the trainer sees it: bytes, which stand for p / 255
/// (`mlp_train::PIXEL_VALUES`).
pub fn images(data: &Dataset) -> ByteImages<'_> {
    ByteImages::new(
        data.pixels(),
        data.labels(),
        data.features(),
        data.classes(),
    )
    .expect("fmnist-data checked sizes and labels when loading")
}

/// Loads one split, turning a missing file into the command that fetches it.
pub fn load(args: &DataArgs, split: Split) -> anyhow::Result<Dataset> {
    let verify = if args.allow_unverified {
        Verify::Skip
    } else {
        Verify::Catalogue
    };
    fmnist_data::load_split(&args.data_dir, split, verify).map_err(|err| match err {
        DataError::Missing { path } => {
            let dir_flag = if args.data_dir.as_os_str() == DEFAULT_DATA_DIR {
                String::new()
            } else {
                format!(" --dir {}", args.data_dir.display())
            };
            anyhow!(
                "{}: not found; fetch the data with `cargo xtask fetch-data{dir_flag}`",
                path.display()
            )
        }
        other => other.into(),
    })
}
