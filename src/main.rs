use std::process::ExitCode;

use clap::Parser;
use exo_matrix_operator::cli::{Cli, Command, LogFormat, RunArgs};
use exo_matrix_operator::error_chain::chain;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen(args) => match exo_matrix_operator::cli::crdgen(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Run(args) => run(*args).await,
    }
}

async fn run(args: RunArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    // Before any HTTP client is built; an unusable file stops the start rather than failing every request.
    if let Some(path) = &args.extra_ca_file {
        match exo_matrix_operator::tls::install(path) {
            Ok(count) => tracing::info!(file = %path.display(), count, "trusting extra CA certificates"),
            Err(e) => return fail(&e),
        }
    }
    let client = match kube::Client::try_default().await {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    match exo_matrix_operator::run::run(client, args.config(), shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %chain(&e), "stopping");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutdown requested; finishing in-flight work");
}

fn fail(err: &dyn std::error::Error) -> ExitCode {
    eprintln!("error: {}", chain(err));
    ExitCode::FAILURE
}
