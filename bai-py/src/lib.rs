//! Python bindings for bai (`pip install bai-py`, `import bai`).
//!
//! This crate will become a maturin/PyO3 project exposing the slot arithmetic of
//! [`bai_core`], the scheduler and the client to Python, with a private native module
//! `bai._internal` wrapped by a small pure-Python package.

pub use bai_core;
