//! `bai-manager`: the manager daemon's entry point. Everything is in the `bai_manager` library.

use std::process::ExitCode;

use bai_manager::cli::{self, Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tracing_config = match cli::tracing_config(&cli) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bai-manager: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bai-manager: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the span exporter's connection lives on it.
    let telemetry = {
        let _entered = runtime.enter();
        match bai_telemetry::init("manager", &tracing_config) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("bai-manager: configuration: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let code = runtime.block_on(async move {
        let Command::StartServer(args) = &cli.command else {
            return match cli::run_once(&cli).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bai-manager: {e}");
                    ExitCode::FAILURE
                }
            };
        };
        let mut running = match cli::start(&cli, args).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bai-manager: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!("bai-manager {}: API on {}", bai_manager::VERSION, running.endpoint());
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bai-manager: cannot handle SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
        let code = tokio::select! {
            _ = term.recv() => ExitCode::SUCCESS,
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            reason = running.failed() => {
                eprintln!("bai-manager: {reason}");
                ExitCode::FAILURE
            }
        };
        running.shutdown().await;
        code
    });
    // While the runtime still drives the exporter: the last spans go out.
    telemetry.shutdown();
    code
}
