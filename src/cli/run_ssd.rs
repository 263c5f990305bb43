//! `ssm-mla run ssd --input IN --output OUT [--dt-softplus] [--chunk-size C] [--device gpu|cpu]`
//! IN holds x, dt, A, B, C and optional D, z, dt_bias, initial_states and dt_limit (2 values:
//! lo, hi) in the layouts of `ssm_mla::ops::ssd_scan`; OUT gets out and final_states.
//!
//! The GPU op stores f32: f16 and bf16 tensors are widened on upload (exactly). out is written
//! in x's dtype (rounded once) and final_states in f32, on both devices. `--device cpu` runs the
//! f64 recurrence on the same widened values.

use super::run_selective_scan::Device;
use ssm_mla::io::write_safetensors;
use ssm_mla::ops::ssd_scan::{check_chunk_size, SsdDims, SsdInputs, SsdShapes, DEFAULT_CHUNK};
use ssm_mla::reference::ssd_scan::{batched_cu_seqlens, ssd_recurrent, SsdHost};
use ssm_mla::{DType, Error, Gpu, HostTensor, Result, SafeTensors};
use std::path::PathBuf;

/// Arguments of `run ssd`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Safetensors file with x, dt, A, B, C [, D, z, dt_bias, initial_states, dt_limit].
    #[arg(long)]
    pub input: PathBuf,
    /// Safetensors file to write (out, final_states).
    #[arg(long)]
    pub output: PathBuf,
    /// Apply softplus to dt + dt_bias.
    #[arg(long)]
    pub dt_softplus: bool,
    /// Chunk size of the chunked scan (a multiple of 16 in 16..=256).
    #[arg(long, default_value_t = DEFAULT_CHUNK)]
    pub chunk_size: usize,
    /// Run on the GPU or with the CPU reference.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: Device,
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn run(args: Args) -> Result<i32> {
    let file = SafeTensors::read(&args.input)?;
    let (x, dt, a, b, c) = (
        file.get("x")?,
        file.get("dt")?,
        file.get("A")?,
        file.get("B")?,
        file.get("C")?,
    );
    let (d, z, bias, init) = (
        file.optional("D"),
        file.optional("z"),
        file.optional("dt_bias"),
        file.optional("initial_states"),
    );
    let (dims, _) = SsdDims::from_shapes(&SsdShapes {
        x: &x.shape,
        dt: &dt.shape,
        a: &a.shape,
        b: &b.shape,
        c: &c.shape,
        d: d.map(|t| &t.shape[..]),
        z: z.map(|t| &t.shape[..]),
        dt_bias: bias.map(|t| &t.shape[..]),
        initial_states: init.map(|t| &t.shape[..]),
    })?;
    check_chunk_size(args.chunk_size)?;
    let dt_limit = match file.optional("dt_limit") {
        None => (0.0, f32::INFINITY),
        Some(t) if t.data.len() == 2 && t.data[0] <= t.data[1] => (t.data[0], t.data[1]),
        Some(t) => {
            return Err(Error::shape(
                "dt_limit",
                "(2) = [lo, hi] with lo ≤ hi",
                &t.shape,
            ));
        }
    };
    let act = x.dtype();
    act.expect_float("x")?;
    let out_shape = [dims.batch, dims.len, dims.heads, dims.head_dim];
    let (out, finals) = match args.device {
        Device::Cpu => {
            let cu = batched_cu_seqlens(dims.batch, dims.len);
            let r = ssd_recurrent(&SsdHost {
                dims,
                x: &x.data,
                dt: &dt.data,
                a: &a.data,
                b: &b.data,
                c: &c.data,
                d: d.map(|t| &t.data[..]),
                z: z.map(|t| &t.data[..]),
                dt_bias: bias.map(|t| &t.data[..]),
                dt_softplus: args.dt_softplus,
                dt_limit,
                cu_seqlens: &cu,
                initial_states: init.map(|t| &t.data[..]),
            })?;
            (to_f32(&r.out), to_f32(&r.final_states))
        }
        Device::Gpu => {
            let gpu = Gpu::new()?;
            let up = |t: &HostTensor| t.upload_as(&gpu, DType::F32);
            let opt = |t: Option<&HostTensor>| t.map(up).transpose();
            let (x_t, dt_t, a_t, b_t, c_t) = (up(x)?, up(dt)?, up(a)?, up(b)?, up(c)?);
            let (d_t, z_t, bias_t, init_t) = (opt(d)?, opt(z)?, opt(bias)?, opt(init)?);
            let (out, finals) = ssm_mla::ops::ssd_scan::ssd_scan(
                &gpu,
                &SsdInputs {
                    x: &x_t,
                    dt: &dt_t,
                    a: &a_t,
                    b: &b_t,
                    c: &c_t,
                    d: d_t.as_ref(),
                    z: z_t.as_ref(),
                    dt_bias: bias_t.as_ref(),
                    initial_states: init_t.as_ref(),
                    dt_softplus: args.dt_softplus,
                    dt_limit,
                    chunk_size: args.chunk_size,
                },
            )?;
            (gpu.read_f32(&out)?, gpu.read_f32(&finals)?)
        }
    };
    let state_shape = [dims.batch, dims.heads, dims.head_dim, dims.n];
    write_safetensors(
        &args.output,
        &[
            ("out", &HostTensor::from_f32_as(&out_shape, act, &out)?),
            ("final_states", &HostTensor::new(&state_shape, finals)?),
        ],
    )?;
    Ok(0)
}
