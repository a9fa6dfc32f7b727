//! Example programs for the bai crates; see the `*.rs` files beside `src/`.
//! Run one with `cargo run -p bai-examples --example NAME`.
