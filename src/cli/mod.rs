//! Command-line parsing and dispatch. Exit codes: 0 success, 1 a check failed, 2 bad input
//! (missing tensor, wrong shape, bad config) with one clear line on stderr.

mod bench;
mod check;
mod generate;
mod hippo;
mod info;
mod run_hippo;
mod run_lm;
mod run_mla;
mod run_selective_scan;
mod run_ssd;
mod run_state_update;

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
    /// Measure the adapter's ceilings, then every kernel at several sizes against them.
    Bench {
        /// Small sizes and few repeats.
        #[arg(long)]
        quick: bool,
        /// Also write every number to this JSON file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Only this kernel (name as in `ssm-mla check`).
        #[arg(long)]
        kernel: Option<String>,
        /// Only the sizes whose label contains this text (e.g. "mamba-130m").
        #[arg(long)]
        size: Option<String>,
        /// Store each kernel's half-capable tensor (matmul weights, the latent cache, the decode
        /// step's activations) as this dtype; kernels that store only f32 are skipped.
        #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
        dtype: String,
    },
    /// HiPPO online function approximation: reconstruction error per N, optional PNG plot.
    Hippo(hippo::Args),
    /// Generate text from a prompt with a Hugging Face model directory (needs tokenizer.json).
    Generate(generate::Args),
    /// Run one computation on files (safetensors in, safetensors out).
    Run {
        /// What to run.
        #[command(subcommand)]
        target: RunTarget,
    },
}

/// Targets of `ssm-mla run`.
#[derive(Subcommand)]
enum RunTarget {
    /// One DeepSeek MLA layer over hidden_states (Bt, S, hidden).
    Mla(run_mla::Args),
    /// A whole language model (Hugging Face directory) over input_ids (Bt, L): logits.
    Lm(run_lm::Args),
    /// Mamba-1 selective scan: IN holds u, delta, A, B, C [, D, z, delta_bias, initial_state].
    SelectiveScan(run_selective_scan::Args),
    /// Mamba-2 SSD chunked scan: IN holds x, dt, A, B, C [, D, z, dt_bias, initial_states,
    /// dt_limit].
    Ssd(run_ssd::Args),
    /// One-token decode step: IN holds state, x, dt, A, B, C [, D, z, dt_bias].
    StateUpdate(run_state_update::Args),
    /// Continuous-time HiPPO matrices A (N, N) and B (N) of one measure.
    Hippo(run_hippo::Args),
}

/// No arguments: check every kernel, then a short benchmark; without a GPU, say so in one line
/// and run the CPU path.
fn main_job() -> ssm_mla::Result<i32> {
    let gpu = match ssm_mla::Gpu::new() {
        Ok(gpu) => std::sync::Arc::new(gpu),
        Err(e) => {
            println!("no GPU: {e}");
            return check::run_cpu_only();
        }
    };
    let checked = check::run_on(&gpu, None)?;
    println!();
    let benched = bench::run_on(
        &gpu,
        &bench::Args {
            quick: true,
            json: None,
            kernel: None,
            size: None,
            dtype: ssm_mla::DType::F32,
        },
    )?;
    Ok(checked.max(benched))
}

/// Parse arguments and run; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Info) => info::run(),
        Some(Command::Check { seed }) => check::run(seed),
        Some(Command::Bench {
            quick,
            json,
            kernel,
            size,
            dtype,
        }) => bench::run(bench::Args {
            quick,
            json,
            kernel,
            size,
            dtype: match dtype.as_str() {
                "f16" => ssm_mla::DType::F16,
                "bf16" => ssm_mla::DType::BF16,
                _ => ssm_mla::DType::F32,
            },
        }),
        Some(Command::Hippo(args)) => hippo::run(args),
        Some(Command::Generate(args)) => generate::run(args),
        Some(Command::Run { target }) => match target {
            RunTarget::Mla(args) => run_mla::run(args),
            RunTarget::Lm(args) => run_lm::run(args),
            RunTarget::SelectiveScan(args) => run_selective_scan::run(args),
            RunTarget::Ssd(args) => run_ssd::run(args),
            RunTarget::StateUpdate(args) => run_state_update::run(args),
            RunTarget::Hippo(args) => run_hippo::run(args),
        },
        None => main_job(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
