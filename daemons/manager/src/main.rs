//! `bai-manager`: the manager daemon's entry point.

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => {
            println!("bai-manager {}", bai_manager::VERSION);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "bai-manager {}: this build has no server commands yet; only --version is available",
                bai_manager::VERSION
            );
            ExitCode::from(2)
        }
    }
}
