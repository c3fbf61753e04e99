//! `sr-gateway`: bootstrap an installation, serve, mint admin tokens, demo.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sr_gateway::bootstrap::{self, BootstrapOptions, BootstrapReport};
use sr_gateway::config::GatewayConfig;
use sr_gateway::server::{self, ServerOptions};

// The gateway allocates and frees millions of small strings and maps per
// large ingest or sweep build; mimalloc does that at a fraction of glibc's
// cost (measured in the agent_sweep and sweep_generate benches, which use
// it too).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sr-gateway", version, about = "ServiceRadar gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new installation (or report the existing one unchanged).
    Bootstrap {
        /// State directory for certificates, keys and gateway.toml.
        #[arg(long)]
        state: PathBuf,
        /// PostgreSQL URL.
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        database_url: String,
        /// Public gRPC address clients use (host:port or https://host:port).
        #[arg(long, default_value = "https://localhost:50052")]
        gateway_addr: String,
        /// Public admin API URL.
        #[arg(long, default_value = "https://localhost:8443")]
        admin_url: String,
        /// Extra DNS names or IPs for the gateway certificate.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Gateway id.
        #[arg(long, default_value = "gateway")]
        gateway_id: String,
    },
    /// Run the gateway until SIGTERM/SIGINT.
    Serve {
        /// Gateway config file (as written by bootstrap).
        #[arg(long)]
        config: PathBuf,
    },
    /// Mint a new platform-admin token (prints it once).
    AdminToken {
        /// Gateway config file.
        #[arg(long)]
        config: PathBuf,
        /// Label for the token.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Run the whole system on loopback: a throwaway database and
    /// installation, the gateway, a tenant with a Faker integration, and the
    /// platform sync; prints a summary.
    Demo(commands::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo tells its own story; the gateway inside it logs only problems.
    init_tracing(if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Bootstrap {
            state,
            database_url,
            gateway_addr,
            admin_url,
            sans,
            gateway_id,
        } => {
            let mut opts = BootstrapOptions::new(state, database_url);
            opts.gateway_addr = gateway_addr;
            opts.admin_url = admin_url;
            opts.sans = sans;
            opts.gateway_id = gateway_id;
            let report = bootstrap::bootstrap(&opts).await?;
            print_report(&report);
            Ok(())
        }
        Command::Serve { config } => {
            let config = GatewayConfig::load(&config)?;
            let handle = server::start(config, ServerOptions::default()).await?;
            server::wait_for_signal()
                .await
                .context("installing signal handlers")?;
            handle.shutdown().await?;
            Ok(())
        }
        Command::Demo(args) => commands::demo::run(args).await,
        Command::AdminToken { config, name } => {
            let config = GatewayConfig::load(&config)?;
            let token = bootstrap::mint_platform_token(&config.database_url, &name).await?;
            println!("{token}");
            Ok(())
        }
    }
}

fn print_report(r: &BootstrapReport) {
    let state = |created: bool| if created { "created" } else { "exists" };
    println!("state directory      {}", r.state_dir.display());
    println!(
        "platform tenant      {} ({})",
        r.platform_tenant_id,
        state(r.platform_tenant_created)
    );
    println!(
        "root CA              sha256 {} ({})",
        r.root_ca_sha256,
        state(r.root_ca_created)
    );
    println!(
        "gateway certificate  sha256 {} ({})",
        r.gateway_cert_sha256,
        state(r.gateway_cert_created)
    );
    println!(
        "platform sync cert   sha256 {} ({})",
        r.platform_sync_cert_sha256,
        state(r.platform_sync_cert_created)
    );
    println!(
        "platform sync        {} ({})",
        r.platform_sync_id,
        state(r.platform_sync_created)
    );
    println!("secrets key          {}", state(r.secrets_key_created));
    println!(
        "config               {} ({})",
        r.config_file.display(),
        state(r.config_created)
    );
    match &r.admin_token {
        Some(token) => {
            println!("platform admin token {token}");
            println!("                     (shown once; store it now)");
        }
        None => println!(
            "platform admin token exists; mint a new one with `sr-gateway admin-token --config {}`",
            r.config_file.display()
        ),
    }
    println!(
        "next: sr-gateway serve --config {}",
        r.config_file.display()
    );
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ").replace('\n', " ")
}
