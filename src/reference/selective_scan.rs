//! CPU reference of the Mamba-1 selective scan, mirroring `mamba_ssm`'s
//! `selective_scan_ref` line by line with f64 accumulation:
//!
//! ```text
//! dt = delta + delta_bias;  if delta_softplus: dt = softplus(dt)   (softplus(x) = x for x > 20)
//! x_0 = initial_state or 0
//! x_t[n] = exp(dt_t · A[d,n]) · x_{t-1}[n] + dt_t · B_t[n] · u_t
//! y_t = Σ_n C_t[n] · x_t[n] + D[d] · u_t;   if z: y_t *= silu(z_t)
//! ```
//!
//! Layouts (row-major): u, delta, z, out (Bt, D, L); A (D, N); B and C each (D, N) constant,
//! (Bt, N, L) variable or (Bt, G, N, L) grouped (channel d uses group d / (D/G)); D, delta_bias
//! (D); initial_state, last_state (Bt, D, N).

use crate::error::{Error, Result};
use crate::spec::selective_scan::{BcLayout, ScanDims};

/// Host-side inputs of the selective scan: flat row-major slices with the layouts of the module
/// docs. `dims` says how to read them (build it with [`ScanDims::from_shapes`]).
#[derive(Clone, Copy, Debug)]
pub struct SelectiveScanHost<'a> {
    /// Sizes and the B/C layouts.
    pub dims: ScanDims,
    /// u (Bt, D, L).
    pub u: &'a [f32],
    /// delta (Bt, D, L).
    pub delta: &'a [f32],
    /// A (D, N).
    pub a: &'a [f32],
    /// B: (D, N), (Bt, N, L) or (Bt, G, N, L) as `dims.b` says.
    pub b: &'a [f32],
    /// C: like B, as `dims.c` says.
    pub c: &'a [f32],
    /// Optional skip weight D (D).
    pub d: Option<&'a [f32]>,
    /// Optional gate z (Bt, D, L).
    pub z: Option<&'a [f32]>,
    /// Optional delta_bias (D).
    pub delta_bias: Option<&'a [f32]>,
    /// Optional initial_state (Bt, D, N).
    pub initial_state: Option<&'a [f32]>,
    /// Apply softplus to delta + delta_bias.
    pub delta_softplus: bool,
}

/// Outputs of the reference scan, in f64.
#[derive(Clone, Debug)]
pub struct ScanOutput {
    /// out (Bt, D, L).
    pub out: Vec<f64>,
    /// last_state (Bt, D, N): x_L.
    pub last_state: Vec<f64>,
}

/// softplus(x) = ln(1 + eˣ), and x itself for x > 20 (as PyTorch's `F.softplus` threshold).
pub fn softplus(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

/// silu(z) = z · sigmoid(z).
pub fn silu(z: f64) -> f64 {
    z / (1.0 + (-z).exp())
}

fn check_len(name: &str, spelled: &str, shape: &[usize], got: usize) -> Result<()> {
    if shape.iter().product::<usize>() != got {
        return Err(Error::shape(
            name,
            format!(
                "{spelled} = {shape:?} ({} elements)",
                shape.iter().product::<usize>()
            ),
            &[got],
        ));
    }
    Ok(())
}

impl SelectiveScanHost<'_> {
    /// Check every slice's length against `dims`.
    pub fn validate(&self) -> Result<()> {
        let s = &self.dims;
        let (bt, dd, l, n) = (s.batch, s.dim, s.len, s.n);
        check_len("u", "(Bt, D, L)", &[bt, dd, l], self.u.len())?;
        check_len("delta", "(Bt, D, L)", &[bt, dd, l], self.delta.len())?;
        check_len("A", "(D, N)", &[dd, n], self.a.len())?;
        check_len("B", &s.b.spelled(), &s.b.shape(s), self.b.len())?;
        check_len("C", &s.c.spelled(), &s.c.shape(s), self.c.len())?;
        if let Some(d) = self.d {
            check_len("D", "(D)", &[dd], d.len())?;
        }
        if let Some(z) = self.z {
            check_len("z", "(Bt, D, L)", &[bt, dd, l], z.len())?;
        }
        if let Some(bias) = self.delta_bias {
            check_len("delta_bias", "(D)", &[dd], bias.len())?;
        }
        if let Some(h) = self.initial_state {
            check_len("initial_state", "(Bt, D, N)", &[bt, dd, n], h.len())?;
        }
        Ok(())
    }
}

/// Element of B or C at (batch b, channel d, state n, step t).
fn bc(
    layout: BcLayout,
    data: &[f32],
    dims: &ScanDims,
    b: usize,
    d: usize,
    n: usize,
    t: usize,
) -> f64 {
    let v = match layout {
        BcLayout::Constant => data[d * dims.n + n],
        BcLayout::Grouped(g) => {
            let group = d / (dims.dim / g);
            data[((b * g + group) * dims.n + n) * dims.len + t]
        }
    };
    v as f64
}

/// The selective scan on the CPU: the sequential recurrence in f64.
pub fn selective_scan(inp: &SelectiveScanHost) -> Result<ScanOutput> {
    inp.validate()?;
    let s = inp.dims;
    let (bt, dd, l, nn) = (s.batch, s.dim, s.len, s.n);
    let mut out = vec![0.0f64; bt * dd * l];
    let mut last_state = vec![0.0f64; bt * dd * nn];
    let mut x = vec![0.0f64; nn];
    for b in 0..bt {
        for d in 0..dd {
            let row = b * dd + d;
            for (n, xn) in x.iter_mut().enumerate() {
                *xn = inp.initial_state.map_or(0.0, |h| h[row * nn + n] as f64);
            }
            let bias = inp.delta_bias.map_or(0.0, |v| v[d] as f64);
            let skip = inp.d.map(|v| v[d] as f64);
            for t in 0..l {
                let i = row * l + t;
                let u = inp.u[i] as f64;
                let mut dt = inp.delta[i] as f64 + bias;
                if inp.delta_softplus {
                    dt = softplus(dt);
                }
                let mut y = 0.0;
                for (n, xn) in x.iter_mut().enumerate() {
                    let a = inp.a[d * nn + n] as f64;
                    let b_t = bc(s.b, inp.b, &s, b, d, n, t);
                    let c_t = bc(s.c, inp.c, &s, b, d, n, t);
                    *xn = (dt * a).exp() * *xn + dt * b_t * u;
                    y += c_t * *xn;
                }
                if let Some(skip) = skip {
                    y += skip * u;
                }
                if let Some(z) = inp.z {
                    y *= silu(z[i] as f64);
                }
                out[i] = y;
            }
            last_state[row * nn..(row + 1) * nn].copy_from_slice(&x);
        }
    }
    Ok(ScanOutput { out, last_state })
}
