//! Properties of the IDX parser on arbitrary input: every byte string gives a value or a
//! typed error, never a panic, and never an allocation larger than the input justifies (a
//! header that claims four billion images must not make us reserve memory for them).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use fmnist_data::{IdxError, parse_idx, read_idx_file};
use proptest::prelude::*;

/// The system allocator, recording the largest single allocation while `TRACKING` is set.
struct Largest;

static TRACKING: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) > 0 {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) > 0 {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// An IDX header with arbitrary dimensions, followed by arbitrary bytes.
fn idx_like() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..5,
        proptest::collection::vec(any::<u32>(), 0..5),
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(ndim, dims, payload)| {
            let mut bytes = vec![0, 0, 0x08, ndim];
            for d in dims.iter().take(ndim as usize) {
                bytes.extend_from_slice(
                    &(d % 70).max(if d % 7 == 0 { *d } else { 0 }).to_be_bytes(),
                );
            }
            bytes.extend(payload);
            bytes
        })
}

fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), idx_like()]
}

/// Largest allocation while reading `bytes` from a file (raw, or gzip-compressed if `gzip`).
fn largest_allocation_reading(bytes: &[u8], gzip: bool, rank: usize) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let on_disk = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    } else {
        bytes.to_vec()
    };
    std::fs::write(&path, &on_disk).unwrap();
    LARGEST.store(0, Ordering::SeqCst);
    TRACKING.fetch_add(1, Ordering::SeqCst);
    let _ = read_idx_file(&path, rank);
    TRACKING.fetch_sub(1, Ordering::SeqCst);
    (LARGEST.load(Ordering::SeqCst), on_disk.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn parsing_any_bytes_gives_a_value_or_a_typed_error(bytes in any_input()) {
        match parse_idx(&bytes) {
            Ok(array) => prop_assert_eq!(array.data.len(), array.dims.iter().product::<usize>()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn reading_a_file_never_allocates_more_than_its_content_justifies(bytes in any_input(), gzip in any::<bool>(), rank in 1usize..4) {
        let (largest, file_len) = largest_allocation_reading(&bytes, gzip, rank);
        // Buffers of the reader and the gzip decoder take up to 64 KiB each; beyond them, a
        // block may hold what the file could decompress to (deflate expands at most 1032:1),
        // however large the header's claim.
        let expansion = if gzip { 1032 } else { 1 };
        let justified = 2 * (1 << 16) + expansion * file_len + 4 * bytes.len();
        prop_assert!(largest <= justified, "allocated {largest} bytes reading {} bytes", bytes.len());
    }
}

#[test]
fn a_header_claiming_four_billion_images_reserves_nothing_for_them() {
    let mut bytes = vec![0, 0, 0x08, 3];
    for d in [u32::MAX / 784, 28, 28] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(&[0; 100]);
    assert!(matches!(
        parse_idx(&bytes),
        Err(IdxError::TooLarge { .. } | IdxError::Truncated { .. })
    ));
    for gzip in [false, true] {
        let (largest, _) = largest_allocation_reading(&bytes, gzip, 3);
        assert!(largest < 1 << 20, "gzip={gzip}: allocated {largest} bytes");
    }
}
