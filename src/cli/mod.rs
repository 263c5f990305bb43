//! Command-line parsing and dispatch. Exit codes: 0 success, 1 a check failed, 2 bad input
//! (missing tensor, wrong shape, bad config) with one clear line on stderr.

mod check;
mod info;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ssm-mla",
    version,
    about = "Portable GPU kernels for SSM scans and Multi-head Latent Attention, checked against the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// List adapters with backend, device type, driver, features and compute limits.
    Info,
    /// Check every kernel against the CPU reference on this adapter.
    Check {
        /// Seed for the random inputs (default: from the clock; printed).
        #[arg(long)]
        seed: Option<u64>,
    },
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Info) => info::run(),
        Some(Command::Check { seed }) => check::run(seed),
        None => check::run(None),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
