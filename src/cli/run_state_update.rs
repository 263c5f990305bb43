//! `ssm-mla run state-update --input IN --output OUT [--dt-softplus] [--dt-limit LO HI]
//! [--device gpu|cpu]`
//! IN holds state, x, dt, A, B, C and optional D, z, dt_bias (the layouts of
//! `ssm_mla::ops::state_update`); OUT gets out and the updated state. x's rank picks the form:
//! x (Bt, D) is the Mamba-1 step (state (Bt, D, N), dt (Bt, D), A (D, N), D and dt_bias (D));
//! x (Bt, H, P) the multi-head Mamba-2 step (state (Bt, H, P, N), dt (Bt, H), A (H), B, C
//! (Bt, G, N), D (H) or (H, P), dt_bias (H), z (Bt, H, P)), where `--dt-limit` clamps dt after
//! softplus (the multi-head form only).
//!
//! Dtypes follow the file, as the op takes them: x, dt, B, C, z in x's dtype (f32, f16 or
//! bf16), state, A, D, dt_bias f32. On the GPU half tensors are uploaded as stored (no trip
//! through f32); out is written in x's dtype and the state in f32. `--device cpu` runs the f64
//! reference on the stored values and rounds out to x's dtype the same way.

use super::run_selective_scan::{check_dtypes, Device};
use ssm_mla::io::write_safetensors;
use ssm_mla::ops::state_update::{
    HeadsDims, StateUpdateHeadsInputs, StateUpdateInputs, UpdateDims, UpdateShapes,
};
use ssm_mla::reference::state_update::{
    state_update, state_update_heads, StateUpdateHeadsHost, StateUpdateHost,
};
use ssm_mla::{Gpu, HostTensor, Result, SafeTensors};
use std::path::PathBuf;

/// Arguments of `run state-update`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Safetensors file with state, x, dt, A, B, C [, D, z, dt_bias].
    #[arg(long)]
    pub input: PathBuf,
    /// Safetensors file to write (out, state).
    #[arg(long)]
    pub output: PathBuf,
    /// Apply softplus to dt + dt_bias.
    #[arg(long)]
    pub dt_softplus: bool,
    /// Clamp dt to [LO, HI] after softplus (multi-head form only; default: no clamp).
    #[arg(long, num_args = 2, value_names = ["LO", "HI"], allow_negative_numbers = true)]
    pub dt_limit: Option<Vec<f32>>,
    /// Run on the GPU or with the CPU reference.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: Device,
}

pub fn run(args: Args) -> Result<i32> {
    let file = SafeTensors::read(&args.input)?;
    let (state, x, dt, a, b, c) = (
        file.get("state")?,
        file.get("x")?,
        file.get("dt")?,
        file.get("A")?,
        file.get("B")?,
        file.get("C")?,
    );
    let (d, z, bias) = (
        file.optional("D"),
        file.optional("z"),
        file.optional("dt_bias"),
    );
    let shapes = UpdateShapes {
        state: &state.shape,
        x: &x.shape,
        dt: &dt.shape,
        a: &a.shape,
        b: &b.shape,
        c: &c.shape,
        d: d.map(|t| &t.shape[..]),
        z: z.map(|t| &t.shape[..]),
        dt_bias: bias.map(|t| &t.shape[..]),
        slots: None,
    };
    let act = x.dtype();
    check_dtypes(
        "x",
        act,
        &[("dt", Some(dt)), ("B", Some(b)), ("C", Some(c)), ("z", z)],
        &[],
        &[
            ("state", Some(state)),
            ("A", Some(a)),
            ("D", d),
            ("dt_bias", bias),
        ],
    )?;
    if x.shape.len() == 3 {
        return run_heads(&args, &shapes, &file);
    }
    if args.dt_limit.is_some() {
        return Err(ssm_mla::Error::invalid(
            "--dt-limit applies to the multi-head form only (x of shape (Bt, H, P))",
        ));
    }
    let dims = UpdateDims::from_shapes(&shapes)?;
    let (out, new_state) = match args.device {
        Device::Cpu => {
            let r = state_update(&StateUpdateHost {
                dims,
                state: &state.data,
                x: &x.data,
                dt: &dt.data,
                a: &a.data,
                b: &b.data,
                c: &c.data,
                d: d.map(|t| &t.data[..]),
                z: z.map(|t| &t.data[..]),
                dt_bias: bias.map(|t| &t.data[..]),
                slots: None,
                dt_softplus: args.dt_softplus,
            })?;
            let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            (f(&r.out), f(&r.state))
        }
        Device::Gpu => {
            let gpu = Gpu::new()?;
            let up = |t: &HostTensor| t.upload(&gpu);
            let opt = |t: Option<&HostTensor>| t.map(up).transpose();
            let (s_t, x_t, dt_t, a_t, b_t, c_t) =
                (up(state)?, up(x)?, up(dt)?, up(a)?, up(b)?, up(c)?);
            let (d_t, z_t, bias_t) = (opt(d)?, opt(z)?, opt(bias)?);
            let out = ssm_mla::ops::state_update::state_update(
                &gpu,
                &StateUpdateInputs {
                    state: &s_t,
                    x: &x_t,
                    dt: &dt_t,
                    a: &a_t,
                    b: &b_t,
                    c: &c_t,
                    d: d_t.as_ref(),
                    z: z_t.as_ref(),
                    dt_bias: bias_t.as_ref(),
                    state_batch_indices: None,
                    dt_softplus: args.dt_softplus,
                },
            )?;
            (gpu.read_f32(&out)?, gpu.read_f32(&s_t)?)
        }
    };
    write_safetensors(
        &args.output,
        &[
            (
                "out",
                &HostTensor::from_f32_as(&[dims.batch, dims.dim], act, &out)?,
            ),
            ("state", &HostTensor::new(&state.shape, new_state)?),
        ],
    )?;
    Ok(0)
}

/// The multi-head form: x (Bt, H, P).
fn run_heads(args: &Args, shapes: &UpdateShapes, file: &SafeTensors) -> Result<i32> {
    let dims = HeadsDims::from_shapes(shapes)?;
    let (state, x, dt, a, b, c) = (
        file.get("state")?,
        file.get("x")?,
        file.get("dt")?,
        file.get("A")?,
        file.get("B")?,
        file.get("C")?,
    );
    let (d, z, bias) = (
        file.optional("D"),
        file.optional("z"),
        file.optional("dt_bias"),
    );
    let dt_limit = match args.dt_limit.as_deref() {
        Some(&[lo, hi]) => (lo, hi),
        _ => (0.0, f32::INFINITY),
    };
    let (out, new_state) = match args.device {
        Device::Cpu => {
            let r = state_update_heads(&StateUpdateHeadsHost {
                dims,
                state: &state.data,
                x: &x.data,
                dt: &dt.data,
                a: &a.data,
                b: &b.data,
                c: &c.data,
                d: d.map(|t| &t.data[..]),
                z: z.map(|t| &t.data[..]),
                dt_bias: bias.map(|t| &t.data[..]),
                slots: None,
                dt_softplus: args.dt_softplus,
                dt_limit,
            })?;
            let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
            (f(&r.out), f(&r.state))
        }
        Device::Gpu => {
            let gpu = Gpu::new()?;
            let up = |t: &HostTensor| t.upload(&gpu);
            let opt = |t: Option<&HostTensor>| t.map(up).transpose();
            let (s_t, x_t, dt_t, a_t, b_t, c_t) =
                (up(state)?, up(x)?, up(dt)?, up(a)?, up(b)?, up(c)?);
            let (d_t, z_t, bias_t) = (opt(d)?, opt(z)?, opt(bias)?);
            let out = ssm_mla::ops::state_update::state_update_heads(
                &gpu,
                &StateUpdateHeadsInputs {
                    state: &s_t,
                    x: &x_t,
                    dt: &dt_t,
                    a: &a_t,
                    b: &b_t,
                    c: &c_t,
                    d: d_t.as_ref(),
                    z: z_t.as_ref(),
                    dt_bias: bias_t.as_ref(),
                    state_batch_indices: None,
                    dt_softplus: args.dt_softplus,
                    dt_limit,
                },
            )?;
            (gpu.read_f32(&out)?, gpu.read_f32(&s_t)?)
        }
    };
    write_safetensors(
        &args.output,
        &[
            (
                "out",
                &HostTensor::from_f32_as(
                    &[dims.batch, dims.heads, dims.head_dim],
                    x.dtype(),
                    &out,
                )?,
            ),
            ("state", &HostTensor::new(&state.shape, new_state)?),
        ],
    )?;
    Ok(0)
}
