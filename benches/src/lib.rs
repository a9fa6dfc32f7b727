//! Benchmarks for the bai crates (criterion); run them with `cargo bench -p bai-benches`.
