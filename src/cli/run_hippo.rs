//! `ssm-mla run hippo --measure legt|legs|lagt|fout --n N --output OUT`: writes the
//! continuous-time HiPPO matrices of `ssm_mla::hippo::transition` as f32 safetensors, `A` (N, N)
//! row-major and `B` (N). Conventions (signs, LegT window θ = 1, FouT basis order) are those of
//! the `ssm_mla::hippo` module docs.

use ssm_mla::hippo::{transition, Measure};
use ssm_mla::io::{write_safetensors, HostTensor};
use ssm_mla::{Error, Result};
use std::path::PathBuf;

/// Arguments of `run hippo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// legt, legs, lagt or fout.
    #[arg(long)]
    pub measure: String,
    /// State size N.
    #[arg(long)]
    pub n: usize,
    /// Output safetensors (`A` (N, N), `B` (N)).
    #[arg(long)]
    pub output: PathBuf,
}

/// Largest N written (A alone is N² floats).
const MAX_N: usize = 8192;

/// Run the command; bad input is an `Err` (exit code 2).
pub fn run(args: Args) -> Result<i32> {
    let measure: Measure = args.measure.parse()?;
    if args.n == 0 || args.n > MAX_N {
        return Err(Error::invalid(format!(
            "--n must be in 1..={MAX_N}, got {}",
            args.n
        )));
    }
    let n = args.n;
    let (a, b) = transition(measure, n)?;
    // nalgebra is column-major; safetensors wants row-major.
    let a_rows: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |k| (i, k)))
        .map(|(i, k)| a[(i, k)] as f32)
        .collect();
    let a = HostTensor::new(&[n, n], a_rows)?;
    let b = HostTensor::new(&[n], b.iter().map(|&v| v as f32).collect())?;
    write_safetensors(&args.output, &[("A", &a), ("B", &b)])?;
    println!(
        "wrote HiPPO-{} A ({n}, {n}) and B ({n}) to {}",
        measure.name(),
        args.output.display()
    );
    Ok(0)
}
