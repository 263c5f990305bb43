//! CPU reference of the one-token Mamba-1 decode step, mirroring `mamba_ssm`'s
//! `selective_state_update` with f64 accumulation. For each request b (state row s = slot\[b\],
//! or b without slots) and channel d:
//!
//! ```text
//! dt = dt[b,d] + dt_bias[d];  if dt_softplus: dt = softplus(dt)
//! state[s,d,n] = exp(dt · A[d,n]) · state[s,d,n] + dt · B[b,g,n] · x[b,d]     (g = d / (D/G))
//! out[b,d] = (Σ_n state[s,d,n] · C[b,g,n] + D[d] · x[b,d]) · silu(z[b,d])
//! ```
//!
//! Layouts: state (Pool, D, N) (Pool = Bt without slots); x, dt, z, out (Bt, D); B, C (Bt, N) or
//! (Bt, G, N); A (D, N); D, dt_bias (D); slots (Bt) i32. A negative slot (or one ≥ Pool) skips
//! request b: its state row is untouched and its out row is 0.
//!
//! The multi-head (Mamba-2) form, [`state_update_heads`], per request b, head h, channel p:
//!
//! ```text
//! dt = dt[b,h] + dt_bias[h];  if dt_softplus: dt = softplus(dt);  dt = clamp(dt, lo, hi)
//! state[s,h,p,n] = exp(dt · A[h]) · state[s,h,p,n] + dt · B[b,g,n] · x[b,h,p]   (g = h / (H/G))
//! out[b,h,p] = (Σ_n state[s,h,p,n] · C[b,g,n] + D · x[b,h,p]) · silu(z[b,h,p])
//! ```
//!
//! with D = D\[h\] or D\[h,p\], and the clamp only for a dt_limit other than (0, +inf), as
//! `mamba_ssm` applies it.

use crate::error::{Error, Result};
use crate::reference::selective_scan::{silu, softplus};
use crate::spec::state_update::{check_dt_limit, limit_applies, HeadsDims, UpdateDims};

/// Host-side inputs of the decode step (flat row-major slices, layouts of the module docs).
#[derive(Clone, Copy, Debug)]
pub struct StateUpdateHost<'a> {
    /// Sizes (build with [`UpdateDims::from_shapes`]).
    pub dims: UpdateDims,
    /// state (Pool, D, N) before the step.
    pub state: &'a [f32],
    /// x (Bt, D).
    pub x: &'a [f32],
    /// dt (Bt, D).
    pub dt: &'a [f32],
    /// A (D, N).
    pub a: &'a [f32],
    /// B (Bt, N) or (Bt, G, N).
    pub b: &'a [f32],
    /// C (Bt, N) or (Bt, G, N).
    pub c: &'a [f32],
    /// Optional skip weight D (D).
    pub d: Option<&'a [f32]>,
    /// Optional gate z (Bt, D).
    pub z: Option<&'a [f32]>,
    /// Optional dt_bias (D).
    pub dt_bias: Option<&'a [f32]>,
    /// Optional state slot per request (Bt); negative or ≥ Pool skips the request.
    pub slots: Option<&'a [i32]>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
}

impl StateUpdateHost<'_> {
    /// Check every slice's length against `dims`.
    pub fn validate(&self) -> Result<()> {
        let len = |name: &str, spelled: &str, shape: &[usize], got: usize| -> Result<()> {
            if shape.iter().product::<usize>() != got {
                return Err(Error::shape(name, format!("{spelled} = {shape:?}"), &[got]));
            }
            Ok(())
        };
        let s = &self.dims;
        let (bt, dim, n) = (s.batch, s.dim, s.n);
        len("state", "(Pool, D, N)", &[s.pool, dim, n], self.state.len())?;
        len("x", "(Bt, D)", &[bt, dim], self.x.len())?;
        len("dt", "(Bt, D)", &[bt, dim], self.dt.len())?;
        len("A", "(D, N)", &[dim, n], self.a.len())?;
        len("B", "(Bt, G, N)", &[bt, s.b_groups, n], self.b.len())?;
        len("C", "(Bt, G, N)", &[bt, s.c_groups, n], self.c.len())?;
        if let Some(d) = self.d {
            len("D", "(D)", &[dim], d.len())?;
        }
        if let Some(z) = self.z {
            len("z", "(Bt, D)", &[bt, dim], z.len())?;
        }
        if let Some(b) = self.dt_bias {
            len("dt_bias", "(D)", &[dim], b.len())?;
        }
        match (self.slots, s.slots) {
            (Some(slots), true) => len("state_batch_indices", "(Bt)", &[bt], slots.len())?,
            (None, false) => {}
            _ => {
                return Err(Error::invalid(
                    "state_batch_indices given without dims.slots or the reverse",
                ))
            }
        }
        Ok(())
    }
}

/// Outputs of the reference decode step, in f64.
#[derive(Clone, Debug)]
pub struct UpdateOutput {
    /// out (Bt, D).
    pub out: Vec<f64>,
    /// The whole state pool (Pool, D, N) after the step.
    pub state: Vec<f64>,
}

/// One decode step on the CPU.
pub fn state_update(inp: &StateUpdateHost) -> Result<UpdateOutput> {
    inp.validate()?;
    let s = inp.dims;
    let (bt, dd, nn) = (s.batch, s.dim, s.n);
    let mut state: Vec<f64> = inp.state.iter().map(|&v| v as f64).collect();
    let mut out = vec![0.0f64; bt * dd];
    for b in 0..bt {
        let slot = match inp.slots {
            Some(slots) => {
                let s_i = slots[b];
                if s_i < 0 || s_i as usize >= s.pool {
                    continue; // skipped request: out row stays 0, state untouched
                }
                s_i as usize
            }
            None => b,
        };
        for d in 0..dd {
            let i = b * dd + d;
            let x = inp.x[i] as f64;
            let mut dt = inp.dt[i] as f64 + inp.dt_bias.map_or(0.0, |v| v[d] as f64);
            if inp.dt_softplus {
                dt = softplus(dt);
            }
            let gb = d / (dd / s.b_groups);
            let gc = d / (dd / s.c_groups);
            let mut y = 0.0;
            for n in 0..nn {
                let a = inp.a[d * nn + n] as f64;
                let bn = inp.b[(b * s.b_groups + gb) * nn + n] as f64;
                let cn = inp.c[(b * s.c_groups + gc) * nn + n] as f64;
                let h = &mut state[(slot * dd + d) * nn + n];
                *h = (dt * a).exp() * *h + dt * bn * x;
                y += *h * cn;
            }
            if let Some(skip) = inp.d {
                y += skip[d] as f64 * x;
            }
            if let Some(z) = inp.z {
                y *= silu(z[i] as f64);
            }
            out[i] = y;
        }
    }
    Ok(UpdateOutput { out, state })
}

/// Host-side inputs of the multi-head (Mamba-2) decode step (flat row-major slices): state
/// (Pool, H, P, N); x, z (Bt, H, P); dt (Bt, H); A (H); B, C (Bt, G, N); D (H) or (H, P) (told
/// apart by length); dt_bias (H); slots (Bt).
#[derive(Clone, Copy, Debug)]
pub struct StateUpdateHeadsHost<'a> {
    /// Sizes (build with [`HeadsDims::from_shapes`]).
    pub dims: HeadsDims,
    /// state (Pool, H, P, N) before the step.
    pub state: &'a [f32],
    /// x (Bt, H, P).
    pub x: &'a [f32],
    /// dt (Bt, H).
    pub dt: &'a [f32],
    /// A (H).
    pub a: &'a [f32],
    /// B (Bt, G, N).
    pub b: &'a [f32],
    /// C (Bt, G, N).
    pub c: &'a [f32],
    /// Optional skip weight D (H) or (H, P).
    pub d: Option<&'a [f32]>,
    /// Optional gate z (Bt, H, P).
    pub z: Option<&'a [f32]>,
    /// Optional dt_bias (H).
    pub dt_bias: Option<&'a [f32]>,
    /// Optional state slot per request (Bt); negative or ≥ Pool skips the request.
    pub slots: Option<&'a [i32]>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
    /// Clamp dt to \[lo, hi\] after softplus, unless it is the default (0, +inf).
    pub dt_limit: (f32, f32),
}

impl StateUpdateHeadsHost<'_> {
    /// Check every slice's length against `dims` and the limit.
    pub fn validate(&self) -> Result<()> {
        let len = |name: &str, spelled: &str, shape: &[usize], got: usize| -> Result<()> {
            if shape.iter().product::<usize>() != got {
                return Err(Error::shape(name, format!("{spelled} = {shape:?}"), &[got]));
            }
            Ok(())
        };
        let s = &self.dims;
        let (bt, h, p, n) = (s.batch, s.heads, s.head_dim, s.n);
        len(
            "state",
            "(Pool, H, P, N)",
            &[s.pool, h, p, n],
            self.state.len(),
        )?;
        len("x", "(Bt, H, P)", &[bt, h, p], self.x.len())?;
        len("dt", "(Bt, H)", &[bt, h], self.dt.len())?;
        len("A", "(H)", &[h], self.a.len())?;
        len("B", "(Bt, G, N)", &[bt, s.b_groups, n], self.b.len())?;
        len("C", "(Bt, G, N)", &[bt, s.c_groups, n], self.c.len())?;
        if let Some(d) = self.d {
            if d.len() != h && d.len() != h * p {
                return Err(Error::shape(
                    "D",
                    format!("(H) = [{h}] or (H, P) = [{h}, {p}]"),
                    &[d.len()],
                ));
            }
        }
        if let Some(z) = self.z {
            len("z", "(Bt, H, P)", &[bt, h, p], z.len())?;
        }
        if let Some(b) = self.dt_bias {
            len("dt_bias", "(H)", &[h], b.len())?;
        }
        match (self.slots, s.slots) {
            (Some(slots), true) => len("state_batch_indices", "(Bt)", &[bt], slots.len())?,
            (None, false) => {}
            _ => {
                return Err(Error::invalid(
                    "state_batch_indices given without dims.slots or the reverse",
                ))
            }
        }
        check_dt_limit(self.dt_limit)
    }
}

/// One multi-head decode step on the CPU: out (Bt, H, P) and the state pool (Pool, H, P, N).
pub fn state_update_heads(inp: &StateUpdateHeadsHost) -> Result<UpdateOutput> {
    inp.validate()?;
    let s = inp.dims;
    let (bt, hh, pp, nn) = (s.batch, s.heads, s.head_dim, s.n);
    let clamp = limit_applies(inp.dt_limit);
    let (lo, hi) = (inp.dt_limit.0 as f64, inp.dt_limit.1 as f64);
    let d_per_channel = inp.d.is_some_and(|d| d.len() == hh * pp);
    let mut state: Vec<f64> = inp.state.iter().map(|&v| v as f64).collect();
    let mut out = vec![0.0f64; bt * hh * pp];
    for b in 0..bt {
        let slot = match inp.slots {
            Some(slots) => {
                let s_i = slots[b];
                if s_i < 0 || s_i as usize >= s.pool {
                    continue; // skipped request: out row stays 0, state untouched
                }
                s_i as usize
            }
            None => b,
        };
        for h in 0..hh {
            let mut dt = inp.dt[b * hh + h] as f64 + inp.dt_bias.map_or(0.0, |v| v[h] as f64);
            if inp.dt_softplus {
                dt = softplus(dt);
            }
            if clamp {
                dt = dt.clamp(lo, hi);
            }
            let decay = (dt * inp.a[h] as f64).exp();
            let gb = h / (hh / s.b_groups);
            let gc = h / (hh / s.c_groups);
            for p in 0..pp {
                let i = (b * hh + h) * pp + p;
                let x = inp.x[i] as f64;
                let row = ((slot * hh + h) * pp + p) * nn;
                let mut y = 0.0;
                for n in 0..nn {
                    let bn = inp.b[(b * s.b_groups + gb) * nn + n] as f64;
                    let cn = inp.c[(b * s.c_groups + gc) * nn + n] as f64;
                    let st = &mut state[row + n];
                    *st = decay * *st + dt * bn * x;
                    y += *st * cn;
                }
                if let Some(skip) = inp.d {
                    let k = if d_per_channel { h * pp + p } else { h };
                    y += skip[k] as f64 * x;
                }
                if let Some(z) = inp.z {
                    y *= silu(z[i] as f64);
                }
                out[i] = y;
            }
        }
    }
    Ok(UpdateOutput { out, state })
}
