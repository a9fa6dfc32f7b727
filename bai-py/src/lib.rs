//! Python bindings for bai (`pip install ./bai-py`, `import bai`).
//!
//! This crate is the private native module `bai._internal`, built by maturin and wrapped by the
//! pure-Python package in `python/bai/` (re-exports, the exception hierarchy in `bai.errors`,
//! `.pyi` stubs). It exposes:
//!
//! - [`slots`]: `ResourceSlot` and `BinarySize`, bai-core's exact slot arithmetic and byte sizes;
//! - [`scheduler`]: `Snapshot`, `Config`, `plan`, `explain`, `simulate` and the typed results,
//!   over bai-scheduler, with the GIL released while the scheduler runs;
//! - `client`: `Client` (blocking calls, the GIL released while they wait) and `AsyncClient`
//!   (asyncio coroutines) over bai-client, with `Execution` and `EventStream` iterators; every
//!   call runs on one tokio runtime, created lazily the first time a client needs it.
//!
//! Every Rust error becomes an exception deriving from `bai.BaiError` ([`errors`]); bad input
//! never panics. Python values become the Rust crates' serde types through [`convert`], so field
//! names and defaults are defined once, in Rust.
//! The slot and scheduler parts stay runtime-free.

use pyo3::prelude::*;

mod client;
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
    client::register(m)?;
    Ok(())
}
