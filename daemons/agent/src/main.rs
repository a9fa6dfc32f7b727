//! `bai-agent`: the agent daemon's entry point.

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => {
            println!("bai-agent {}", bai_agent::VERSION);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "bai-agent {}: this build has no server commands yet; only --version is available",
                bai_agent::VERSION
            );
            ExitCode::from(2)
        }
    }
}
