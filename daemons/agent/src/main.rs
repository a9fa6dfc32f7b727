//! `bai-agent`: the agent daemon's entry point. Everything is in the `bai_agent` library.

use std::process::ExitCode;

use bai_agent::config::{AgentConfig, Cli, SubCommand, SAMPLE};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_sample_config {
        print!("{SAMPLE}");
        return ExitCode::SUCCESS;
    }
    if let Some(SubCommand::Watcher(args)) = &cli.command {
        let mut logs = bai_telemetry::TracingConfig::default();
        if let Some(format) = &cli.log_format {
            logs.log_format = format.parse().unwrap_or_default();
        }
        if let Err(e) = bai_telemetry::init("agent-watcher", &logs) {
            eprintln!("bai-agent watcher: {e}");
        }
        return watch(&cli, args);
    }
    let config = match AgentConfig::from_cli(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bai-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        let mut shown = config.clone();
        if shown.rpc.token.is_some() {
            shown.rpc.token = Some("<hidden>".into());
        }
        match toml::to_string_pretty(&shown) {
            Ok(text) => print!("{text}"),
            Err(e) => eprintln!("bai-agent: {e}"),
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bai-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the span exporter's connection lives on it.
    let telemetry = {
        let _entered = runtime.enter();
        match bai_telemetry::init("agent", &config.tracing.clone().with_env(|k| std::env::var(k).ok())) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("bai-agent: configuration: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let code = runtime.block_on(async move {
        let mut running = match bai_agent::daemon::start(config, None).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bai-agent: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bai-agent: cannot handle SIGTERM: {e}");
                return ExitCode::FAILURE;
            }
        };
        let code = tokio::select! {
            _ = term.recv() => ExitCode::SUCCESS,
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            e = running.failed() => {
                eprintln!("bai-agent: {e}");
                ExitCode::FAILURE
            }
        };
        tracing::info!("shutting down; kernels keep running");
        if let Err(e) = running.shutdown().await {
            eprintln!("bai-agent: {e}");
            return ExitCode::FAILURE;
        }
        code
    });
    // While the runtime still drives the exporter: the last spans go out.
    telemetry.shutdown();
    code
}

fn watch(cli: &Cli, args: &bai_agent::config::WatcherArgs) -> ExitCode {
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bai-agent watcher: cannot find this executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut agent_args = args.agent_args.clone();
    if agent_args.is_empty() {
        if let Some(config) = &cli.config {
            agent_args = vec!["--config".into(), config.display().to_string()];
        }
    }
    let config = bai_agent::watcher::WatcherConfig::new(program, agent_args, args.token.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bai-agent watcher: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("bai-agent watcher: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        let shutdown = async {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
            }
        };
        match bai_agent::watcher::run(config, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bai-agent watcher: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
