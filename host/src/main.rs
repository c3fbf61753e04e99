//! `sr-sync`: the ServiceRadar sync runtime and the adapter author's tools.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sr-sync",
    version,
    about = "ServiceRadar sync runtime: runs integration adapters as sandboxed WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tools for adapter authors: inspect and run a component locally.
    #[command(subcommand)]
    Adapter(commands::adapter::AdapterCommand),
    /// Run the sync service: connect to the gateway, pull config, run integrations.
    Run(commands::run::RunArgs),
    /// Fetch an edge onboarding package (certificate, key, CA, config) with its token.
    Enroll(commands::enroll::EnrollArgs),
    /// Serve a mock Armis or NetBox API to develop and check adapters against.
    Mock(commands::mock::MockArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    commands::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Adapter(command) => commands::adapter::run(command).await,
            Command::Run(args) => commands::run::run(args).await,
            Command::Enroll(args) => commands::enroll::run(args).await,
            Command::Mock(args) => commands::mock::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", commands::one_line(&error));
            ExitCode::FAILURE
        }
    }
}
