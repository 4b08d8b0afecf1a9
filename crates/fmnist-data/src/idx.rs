//! The IDX file format (LeCun's MNIST format, also used by Fashion-MNIST).
//!
//! Layout, all integers big-endian:
//! ```text
//! 0x00 0x00 | type (0x08 = u8) | ndim | ndim × u32 dimension sizes | payload (product of sizes) bytes
//! ```
//! Files may be gzip-compressed; [`read_idx_file`] detects that from the gzip magic bytes, not
//! from the file name. Every claim of the header is checked against the bytes actually present
//! before anything large is allocated, so a hostile header cannot make us reserve gigabytes.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use crate::error::{DataError, IdxError};

/// Upper bound on a payload we are willing to describe (4 GiB), far above any real IDX file.
const MAX_PAYLOAD: u64 = 1 << 32;
/// Deflate cannot expand data by more than about 1032:1; used to bound allocation for .gz files.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// A parsed IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimension sizes from the header, e.g. `[60000, 28, 28]`.
    pub dims: Vec<usize>,
    /// The payload in row-major order; its length is the product of `dims`.
    pub data: Vec<u8>,
}

/// An [`IdxArray`] read from a file, with the SHA-256 of the file's decompressed bytes.
#[derive(Debug, Clone)]
pub struct IdxFile {
    /// The parsed content.
    pub array: IdxArray,
    /// SHA-256 of the whole decompressed content (header and payload), lowercase hex.
    pub sha256: String,
}

/// Parses an IDX array from bytes (uncompressed).
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray, IdxError> {
    let (dims, header_len, payload_len) = parse_header(bytes)?;
    let payload = &bytes[header_len..];
    check_payload_len(payload.len() as u64, payload_len)?;
    Ok(IdxArray {
        dims,
        data: payload.to_vec(),
    })
}

/// Reads an IDX file, raw or gzip-compressed, checking it has `rank` dimensions.
pub fn read_idx_file(path: &Path, rank: usize) -> Result<IdxFile, DataError> {
    let io_err = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let idx_err = |source| DataError::Idx {
        path: path.to_owned(),
        source,
    };

    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut magic = [0u8; 2];
    let n = read_up_to(&mut reader, &mut magic).map_err(io_err)?;
    let is_gzip = n == 2 && magic == [0x1f, 0x8b];
    let (mut source, max_len): (Box<dyn Read>, u64) = if is_gzip {
        let chained = std::io::Cursor::new(magic).chain(reader);
        (
            Box::new(MultiGzDecoder::new(chained)),
            file_len.saturating_mul(MAX_DEFLATE_RATIO),
        )
    } else {
        (
            Box::new(std::io::Cursor::new(magic[..n].to_vec()).chain(reader)),
            file_len,
        )
    };

    // The header is at most 4 + 255 * 4 bytes; read the fixed part, then the dimensions.
    let mut header = vec![0u8; 4];
    let got = read_up_to(&mut source, &mut header).map_err(io_err)?;
    if got < 4 {
        return Err(idx_err(IdxError::TooShort { len: got }));
    }
    let ndim = header[3] as usize;
    header.resize(4 + 4 * ndim, 0);
    let got = read_up_to(&mut source, &mut header[4..]).map_err(io_err)?;
    let (dims, header_len, payload_len) = parse_header(&header[..4 + got]).map_err(idx_err)?;
    debug_assert_eq!(header_len, header.len());
    if dims.len() != rank {
        return Err(idx_err(IdxError::WrongRank {
            expected: rank,
            found: dims.len(),
        }));
    }

    // Reserve no more than the input can justify, then read at most one byte past the payload
    // so that trailing data is detected without reading an arbitrarily long tail.
    let mut data = Vec::with_capacity(payload_len.min(max_len) as usize);
    (&mut source)
        .take(payload_len + 1)
        .read_to_end(&mut data)
        .map_err(io_err)?;
    check_payload_len(data.len() as u64, payload_len).map_err(idx_err)?;

    let mut hasher = Sha256::new();
    hasher.update(&header);
    hasher.update(&data);
    let sha256 = hex(&hasher.finalize());
    Ok(IdxFile {
        array: IdxArray { dims, data },
        sha256,
    })
}

/// Returns (dims, header length, payload length) after checking magic, type and size.
fn parse_header(bytes: &[u8]) -> Result<(Vec<usize>, usize, u64), IdxError> {
    if bytes.len() < 4 {
        return Err(IdxError::TooShort { len: bytes.len() });
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        let found = bytes[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let looks_textual = bytes[..4]
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
        let hint = if looks_textual {
            ", looks like text or an HTML page"
        } else {
            ""
        };
        return Err(IdxError::BadMagic { found, hint });
    }
    if bytes[2] != 0x08 {
        return Err(IdxError::UnsupportedType { code: bytes[2] });
    }
    let ndim = bytes[3] as usize;
    let header_len = 4 + 4 * ndim;
    if bytes.len() < header_len {
        return Err(IdxError::TooShort { len: bytes.len() });
    }
    let raw: Vec<u32> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let payload_len = raw
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&len| len <= MAX_PAYLOAD)
        .ok_or_else(|| IdxError::TooLarge { dims: raw.clone() })?;
    Ok((
        raw.iter().map(|&d| d as usize).collect(),
        header_len,
        payload_len,
    ))
}

fn check_payload_len(actual: u64, expected: u64) -> Result<(), IdxError> {
    if actual < expected {
        Err(IdxError::Truncated {
            expected: expected as usize,
            actual: actual as usize,
        })
    } else if actual > expected {
        Err(IdxError::TrailingBytes {
            expected: expected as usize,
        })
    } else {
        Ok(())
    }
}

/// Like `read_exact`, but returns how many bytes were read when the input ends early.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Lowercase hex of a byte slice.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dims: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn parses_a_small_array() {
        let mut bytes = header(&[2, 3]);
        bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let array = parse_idx(&bytes).unwrap();
        assert_eq!(array.dims, vec![2, 3]);
        assert_eq!(array.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_truncated_and_trailing_payloads() {
        let mut bytes = header(&[4]);
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            parse_idx(&bytes),
            Err(IdxError::Truncated {
                expected: 4,
                actual: 3
            })
        );
        bytes.extend_from_slice(&[4, 5]);
        assert_eq!(
            parse_idx(&bytes),
            Err(IdxError::TrailingBytes { expected: 4 })
        );
    }

    #[test]
    fn html_error_page_is_named_as_such() {
        let err = parse_idx(b"<!DOCTYPE html><html>404</html>").unwrap_err();
        assert!(
            err.to_string().contains("looks like text or an HTML page"),
            "{err}"
        );
    }

    #[test]
    fn header_claiming_four_billion_images_is_rejected_or_truncated_without_allocating() {
        let bytes = header(&[u32::MAX, 28, 28]);
        assert!(matches!(parse_idx(&bytes), Err(IdxError::TooLarge { .. })));
        let bytes = header(&[1 << 20, 28, 28]);
        assert!(matches!(parse_idx(&bytes), Err(IdxError::Truncated { .. })));
    }

    #[test]
    fn rejects_other_element_types() {
        let mut bytes = header(&[1]);
        bytes[2] = 0x0d; // f32
        assert_eq!(
            parse_idx(&bytes),
            Err(IdxError::UnsupportedType { code: 0x0d })
        );
    }
}
