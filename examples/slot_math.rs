//! Resource-slot arithmetic and request parsing with bai-core, no runtime needed.
//!
//! Run with `cargo run -p bai-examples --example slot_math`.

use bai_core::{BinarySize, KnownSlots, ResourceSlot, SlotType};
use rust_decimal::Decimal;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The slots this cluster knows: cpu and mem, plus fractional GPUs.
    let known = KnownSlots::new().with("cuda.shares", SlotType::Count)?;

    // What an agent has free, in the original's JSON form.
    let free: ResourceSlot = serde_json::from_str(r#"{"cpu": "8", "mem": "34359738368", "cuda.shares": "1"}"#)?;

    // A user's request as the API receives it: sizes may be human strings.
    let request = serde_json::json!({"cpu": 2, "mem": "12g", "cuda.shares": "0.5"});
    let per_kernel = ResourceSlot::from_user_input(request.as_object().expect("an object"), Some(&known))?;
    let session = per_kernel.checked_mul(Decimal::from(2))?; // two kernels

    println!("request per kernel: {}", per_kernel.to_humanized(&known));
    println!("whole session:      {}", session.to_humanized(&known));
    if session.fits_in(&free) {
        let left = free.checked_sub(&session)?;
        println!("fits; left over:    {}", left.to_humanized(&known));
    } else {
        println!("does not fit; short by {}", session.shortfall(&free).to_humanized(&known));
    }

    // Sizes parse and print the way users write them.
    let shm: BinarySize = "64m".parse()?;
    println!("shared memory:      {shm} ({} bytes)", shm.bytes());

    // Unknown slots are refused with a clear message.
    let bad = serde_json::json!({"gpu": 1});
    if let Err(e) = ResourceSlot::from_user_input(bad.as_object().expect("an object"), Some(&known)) {
        println!("refused:            {e}");
    }
    Ok(())
}
