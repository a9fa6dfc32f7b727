//! Python bindings for bai (`pip install ./bai-py`, `import bai`).
//!
//! This crate is the private native module `bai._internal`, built by maturin and wrapped by the
//! pure-Python package in `python/bai/` (re-exports, the exception hierarchy in `bai.errors`,
//! `.pyi` stubs). It exposes:
//!
//! - [`slots`]: `ResourceSlot` and `BinarySize`, bai-core's exact slot arithmetic and byte sizes;
//! - [`scheduler`]: `Snapshot`, `Config`, `plan`, `explain`, `simulate` and the typed results,
//!   over bai-scheduler, with the GIL released while the scheduler runs.
//!
//! Every Rust error becomes an exception deriving from `bai.BaiError` ([`errors`]); bad input
//! never panics. Python values become the Rust crates' serde types through [`convert`], so field
//! names and defaults are defined once, in Rust.
//!
//! Layout for what comes next: the Python client joins as a `client` module here (registered
//! from [`_internal`] like the others, re-exported by `bai/client.py`), and its async calls will
//! share one tokio runtime, created lazily in a `runtime` module the first time a client needs
//! it; the slot and scheduler parts stay runtime-free.

use pyo3::prelude::*;

mod convert;
mod errors;
pub mod scheduler;
pub mod slots;

/// The native module `bai._internal`.
#[pymodule]
fn _internal(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    slots::register(m)?;
    scheduler::register(m)?;
    Ok(())
}
