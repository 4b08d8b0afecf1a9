//! Build chores for fmnist-mlp, as plain Rust (run through `cargo xtask …`).
//!
//! The library half exists so the chores can be tested like any other code.

pub mod bench;
pub mod fetch;
pub mod neon;
pub mod report;
