//! `ssm-mla run selective-scan --input IN --output OUT [--delta-softplus] [--device gpu|cpu]`
//! IN holds u, delta, A, B, C and optional D, z, delta_bias, initial_state (the layouts of
//! `ssm_mla::ops::selective_scan`); OUT gets out and last_state.
//!
//! Dtypes follow the file, as the op takes them: u, delta, z in u's dtype (f32, f16 or bf16),
//! B and C f32 or u's dtype, the rest f32. On the GPU half tensors are uploaded as stored (no
//! trip through f32); out is written in u's dtype and last_state in f32. `--device cpu` runs the
//! f64 reference on the stored values (halves widened exactly) and rounds out to u's dtype the
//! same way. A dtype the op refuses is refused on both devices, naming the tensor.

use ssm_mla::io::write_safetensors;
use ssm_mla::ops::selective_scan::{ScanDims, ScanShapes, SelectiveScanInputs};
use ssm_mla::reference::selective_scan::{selective_scan, SelectiveScanHost};
use ssm_mla::{DType, Error, Gpu, HostTensor, Result, SafeTensors};
use std::path::PathBuf;

/// Where to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// The default GPU adapter.
    Gpu,
    /// The f64 CPU reference.
    Cpu,
}

/// Arguments of `run selective-scan`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Safetensors file with u, delta, A, B, C [, D, z, delta_bias, initial_state].
    #[arg(long)]
    pub input: PathBuf,
    /// Safetensors file to write (out, last_state).
    #[arg(long)]
    pub output: PathBuf,
    /// Apply softplus to delta + delta_bias.
    #[arg(long)]
    pub delta_softplus: bool,
    /// Run on the GPU or with the CPU reference.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: Device,
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The dtype rule of a kernel whose activations share one dtype: each of `same` must have
/// `act` (the dtype of the tensor named `lead`), each of `either` f32 or `act`, each of `wide`
/// f32; `act` must be a float. The ops check the same on the GPU; this lets `--device cpu`
/// refuse exactly what the GPU refuses.
pub(super) fn check_dtypes(
    lead: &str,
    act: DType,
    same: &[(&str, Option<&HostTensor>)],
    either: &[(&str, Option<&HostTensor>)],
    wide: &[(&str, Option<&HostTensor>)],
) -> Result<()> {
    act.expect_float(lead)?;
    let bad = |name: &str, expected: String, got: DType| Error::DType {
        name: name.into(),
        expected,
        got: got.to_string(),
    };
    for (name, t) in same {
        match t {
            Some(t) if t.dtype() != act => {
                let expected = format!("{act} ({lead}'s dtype)");
                return Err(bad(name, expected, t.dtype()));
            }
            _ => {}
        }
    }
    for (name, t) in either {
        match t {
            Some(t) if t.dtype() != act && t.dtype() != DType::F32 => {
                let expected = format!("f32 or {act} ({lead}'s dtype)");
                return Err(bad(name, expected, t.dtype()));
            }
            _ => {}
        }
    }
    for (name, t) in wide {
        match t {
            Some(t) if t.dtype() != DType::F32 => {
                return Err(bad(name, "f32".into(), t.dtype()));
            }
            _ => {}
        }
    }
    Ok(())
}

pub fn run(args: Args) -> Result<i32> {
    let file = SafeTensors::read(&args.input)?;
    let (u, delta, a, b, c) = (
        file.get("u")?,
        file.get("delta")?,
        file.get("A")?,
        file.get("B")?,
        file.get("C")?,
    );
    let (d, z, bias, init) = (
        file.optional("D"),
        file.optional("z"),
        file.optional("delta_bias"),
        file.optional("initial_state"),
    );
    let dims = ScanDims::from_shapes(&ScanShapes {
        u: &u.shape,
        delta: &delta.shape,
        a: &a.shape,
        b: &b.shape,
        c: &c.shape,
        d: d.map(|t| &t.shape[..]),
        z: z.map(|t| &t.shape[..]),
        delta_bias: bias.map(|t| &t.shape[..]),
        initial_state: init.map(|t| &t.shape[..]),
    })?;
    let act = u.dtype();
    check_dtypes(
        "u",
        act,
        &[("delta", Some(delta)), ("z", z)],
        &[("B", Some(b)), ("C", Some(c))],
        &[
            ("A", Some(a)),
            ("D", d),
            ("delta_bias", bias),
            ("initial_state", init),
        ],
    )?;
    let out_shape = [dims.batch, dims.dim, dims.len];
    let state_shape = [dims.batch, dims.dim, dims.n];
    let (out, last) = match args.device {
        Device::Cpu => {
            let r = selective_scan(&SelectiveScanHost {
                dims,
                u: &u.data,
                delta: &delta.data,
                a: &a.data,
                b: &b.data,
                c: &c.data,
                d: d.map(|t| &t.data[..]),
                z: z.map(|t| &t.data[..]),
                delta_bias: bias.map(|t| &t.data[..]),
                initial_state: init.map(|t| &t.data[..]),
                delta_softplus: args.delta_softplus,
            })?;
            (to_f32(&r.out), to_f32(&r.last_state))
        }
        Device::Gpu => {
            let gpu = Gpu::new()?;
            let up = |t: &HostTensor| t.upload(&gpu);
            let opt = |t: Option<&HostTensor>| t.map(up).transpose();
            let (u_t, delta_t, a_t, b_t, c_t) = (up(u)?, up(delta)?, up(a)?, up(b)?, up(c)?);
            let (d_t, z_t, bias_t, init_t) = (opt(d)?, opt(z)?, opt(bias)?, opt(init)?);
            let (out, last) = ssm_mla::ops::selective_scan::selective_scan(
                &gpu,
                &SelectiveScanInputs {
                    u: &u_t,
                    delta: &delta_t,
                    a: &a_t,
                    b: &b_t,
                    c: &c_t,
                    d: d_t.as_ref(),
                    z: z_t.as_ref(),
                    delta_bias: bias_t.as_ref(),
                    initial_state: init_t.as_ref(),
                    delta_softplus: args.delta_softplus,
                },
            )?;
            (gpu.read_f32(&out)?, gpu.read_f32(&last)?)
        }
    };
    write_safetensors(
        &args.output,
        &[
            ("out", &HostTensor::from_f32_as(&out_shape, act, &out)?),
            ("last_state", &HostTensor::new(&state_shape, last)?),
        ],
    )?;
    Ok(0)
}
