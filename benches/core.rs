//! Micro-benchmarks of bai-core's hot paths: slot arithmetic (the scheduler's inner loop),
//! size parsing and request signing.

// criterion's macros generate undocumented functions
#![allow(missing_docs)]

use std::hint::black_box;

use bai_core::signing::{sign, RequestToSign, API_VERSION};
use bai_core::{BinarySize, Decimal, ResourceSlot};
use criterion::{criterion_group, criterion_main, Criterion};

fn slots(cpu: i64, mem: u64, gpu: &str) -> ResourceSlot {
    ResourceSlot::from_pairs([
        ("cpu", Decimal::from(cpu)),
        ("mem", Decimal::from(mem)),
        ("cuda.shares", gpu.parse().expect("decimal")),
    ])
    .expect("valid slot names")
}

fn resource_slot(c: &mut Criterion) {
    let free = slots(64, 256 << 30, "4");
    let want = slots(2, 8 << 30, "0.5");
    c.bench_function("resource_slot/fits_in", |b| b.iter(|| black_box(&want).fits_in(black_box(&free))));
    c.bench_function("resource_slot/checked_sub", |b| b.iter(|| black_box(&free).checked_sub(black_box(&want))));
    let json = serde_json::to_string(&free).expect("serialisable");
    c.bench_function("resource_slot/from_json", |b| b.iter(|| serde_json::from_str::<ResourceSlot>(black_box(&json))));
}

fn binary_size(c: &mut Criterion) {
    c.bench_function("binary_size/parse", |b| b.iter(|| BinarySize::parse(black_box("1.5GiB"))));
}

fn signing(c: &mut Criterion) {
    let req = RequestToSign {
        method: "POST",
        path_and_query: "/session",
        date: "2024-01-02T03:04:05.678901+00:00",
        host: "127.0.0.1:8081",
        content_type: "application/json",
        api_version: API_VERSION,
    };
    c.bench_function("signing/sign", |b| b.iter(|| sign(black_box("secret"), black_box(&req))));
}

criterion_group!(benches, resource_slot, binary_size, signing);
criterion_main!(benches);
