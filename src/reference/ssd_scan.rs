//! CPU references of the Mamba-2 SSD scan (`mamba_ssm`'s `mamba_chunk_scan_combined`), in f64,
//! in two forms that must agree:
//!
//! ```text
//! dt ← dt + dt_bias;  if dt_softplus: dt ← softplus(dt);  if dt_limit ≠ (0, ∞): dt ← clamp(dt, lo, hi)
//! h_t[p,n] = exp(dt_t·A_h)·h_{t-1}[p,n] + dt_t·x_t[p]·B_t[n]       (h_0 = the initial state or 0)
//! y_t[p]   = Σ_n C_t[n]·h_t[p,n] + D·x_t[p];   if z: y_t ← y_t·silu(z_t)
//! ```
//!
//! - [`ssd_recurrent`]: the recurrence above, token by token.
//! - [`ssd_quadratic`]: the chunked "attention-like" dual form the GPU runs. Within a chunk of
//!   Q tokens, with cum_t = Σ_{s≤t} dt_s·A (inclusive, restarting at each chunk):
//!   `Y_diag[t] = Σ_{s≤t} (C_t·B_s)·exp(cum_t − cum_s)·dt_s·x_s`; each chunk's own state
//!   S_c = Σ_s exp(cum_last − cum_s)·dt_s·x_s ⊗ B_s; the states are scanned across chunks,
//!   H_c = exp(cum_last)·H_{c−1} + S_c, and `Y_off[t] = exp(cum_t)·C_t·H_{c−1}`.
//!
//! Only the clamp is conditional: `mamba_ssm` clamps when dt_limit differs from its default
//! (0, ∞), so that without softplus a negative dt passes through unchanged.
//!
//! Layout: token-major packed sequences. x, z, out (T, H, P); dt (T, H); B, C (T, G, N), head h
//! reads group h / (H/G); A, dt_bias (H); D (H) or (H, P); sequence s is tokens
//! `cu_seqlens[s] .. cu_seqlens[s+1]`, starting from `initial_states[s]` (S, H, P, N) and ending in
//! `final_states[s]`. The batched (Bt, L, …) layout is the packed one with
//! `cu_seqlens = [0, L, 2L, …, Bt·L]` ([`batched_cu_seqlens`]).

use crate::error::{Error, Result};
use crate::reference::selective_scan::softplus;
pub use crate::spec::ssd_scan::clamps;
use crate::spec::ssd_scan::SsdDims;

/// Host-side inputs (see the module docs for layouts). `dims.batch · dims.len` is T.
#[derive(Clone, Copy, Debug)]
pub struct SsdHost<'a> {
    /// Sizes; T = batch · len tokens.
    pub dims: SsdDims,
    /// x (T, H, P).
    pub x: &'a [f32],
    /// dt (T, H), before bias, softplus and clamp.
    pub dt: &'a [f32],
    /// A (H).
    pub a: &'a [f32],
    /// B (T, G, N).
    pub b: &'a [f32],
    /// C (T, G, N).
    pub c: &'a [f32],
    /// Optional D, (H) or (H, P) (told apart by length).
    pub d: Option<&'a [f32]>,
    /// Optional gate z (T, H, P).
    pub z: Option<&'a [f32]>,
    /// Optional dt_bias (H).
    pub dt_bias: Option<&'a [f32]>,
    /// Apply softplus to dt + dt_bias.
    pub dt_softplus: bool,
    /// Clamp range of dt; (0, ∞) is "no clamp".
    pub dt_limit: (f32, f32),
    /// Token offsets of the S sequences (S + 1 values, 0 ..= T).
    pub cu_seqlens: &'a [usize],
    /// Optional initial states (S, H, P, N).
    pub initial_states: Option<&'a [f32]>,
}

/// Outputs of the references, in f64.
#[derive(Clone, Debug)]
pub struct SsdOutput {
    /// out (T, H, P).
    pub out: Vec<f64>,
    /// final_states (S, H, P, N).
    pub final_states: Vec<f64>,
}

/// `[0, L, 2L, …, Bt·L]`: the sequences of a batched (Bt, L, …) input.
pub fn batched_cu_seqlens(batch: usize, len: usize) -> Vec<usize> {
    (0..=batch).map(|b| b * len).collect()
}

impl SsdHost<'_> {
    fn tokens(&self) -> usize {
        self.dims.batch * self.dims.len
    }

    fn sequences(&self) -> usize {
        self.cu_seqlens.len().saturating_sub(1)
    }

    /// Error unless every slice has its layout's length.
    fn check(&self) -> Result<()> {
        let SsdDims {
            heads: h,
            head_dim: p,
            groups: g,
            n,
            ..
        } = self.dims;
        let (t, s) = (self.tokens(), self.sequences());
        let mut want = vec![
            ("x", self.x.len(), t * h * p),
            ("dt", self.dt.len(), t * h),
            ("A", self.a.len(), h),
            ("B", self.b.len(), t * g * n),
            ("C", self.c.len(), t * g * n),
        ];
        if let Some(z) = self.z {
            want.push(("z", z.len(), t * h * p));
        }
        if let Some(bias) = self.dt_bias {
            want.push(("dt_bias", bias.len(), h));
        }
        if let Some(init) = self.initial_states {
            want.push(("initial_states", init.len(), s * h * p * n));
        }
        if let Some(d) = self.d {
            if d.len() != h && d.len() != h * p {
                return Err(Error::invalid(format!(
                    "D has {} values, expected H = {h} or H·P = {}",
                    d.len(),
                    h * p
                )));
            }
        }
        for (name, got, expected) in want {
            if got != expected {
                return Err(Error::invalid(format!(
                    "{name} has {got} values, expected {expected}"
                )));
            }
        }
        let cu = self.cu_seqlens;
        if cu.is_empty() || cu[0] != 0 || cu[s] != t || cu.windows(2).any(|w| w[1] < w[0]) {
            return Err(Error::invalid(format!(
                "cu_seqlens must run from 0 to T = {t} without decreasing, got {cu:?}"
            )));
        }
        if h % g != 0 {
            return Err(Error::invalid(format!("G = {g} does not divide H = {h}")));
        }
        Ok(())
    }

    /// dt of token `t`, head `h` after bias, softplus and clamp.
    pub fn dt_at(&self, t: usize, h: usize) -> f64 {
        let mut v = self.dt[t * self.dims.heads + h] as f64;
        if let Some(bias) = self.dt_bias {
            v += bias[h] as f64;
        }
        if self.dt_softplus {
            v = softplus(v);
        }
        if clamps(self.dt_limit) {
            v = v.clamp(self.dt_limit.0 as f64, self.dt_limit.1 as f64);
        }
        v
    }

    fn x_at(&self, t: usize, h: usize, p: usize) -> f64 {
        self.x[(t * self.dims.heads + h) * self.dims.head_dim + p] as f64
    }

    /// B or C of token `t` for head `h`, state `n`.
    fn bc_at(&self, m: &[f32], t: usize, h: usize, n: usize) -> f64 {
        let g = h / self.dims.heads_per_group();
        m[(t * self.dims.groups + g) * self.dims.n + n] as f64
    }

    fn skip(&self, h: usize, p: usize) -> f64 {
        match self.d {
            None => 0.0,
            Some(d) if d.len() == self.dims.heads => d[h] as f64,
            Some(d) => d[h * self.dims.head_dim + p] as f64,
        }
    }

    /// y + D·x, gated by silu(z): the last line of the recurrence.
    fn finish(&self, y: f64, t: usize, h: usize, p: usize) -> f64 {
        let mut o = y + self.skip(h, p) * self.x_at(t, h, p);
        if let Some(z) = self.z {
            let zz = z[(t * self.dims.heads + h) * self.dims.head_dim + p] as f64;
            o *= zz / (1.0 + (-zz).exp());
        }
        o
    }

    /// The initial state of sequence `s`, head `h` as (P, N), or zeros.
    fn initial(&self, s: usize, h: usize) -> Vec<f64> {
        let pn = self.dims.head_dim * self.dims.n;
        match self.initial_states {
            Some(init) => {
                let at = (s * self.dims.heads + h) * pn;
                init[at..at + pn].iter().map(|&v| v as f64).collect()
            }
            None => vec![0.0; pn],
        }
    }
}

/// The recurrence, token by token, per sequence and head.
pub fn ssd_recurrent(host: &SsdHost) -> Result<SsdOutput> {
    host.check()?;
    let SsdDims {
        heads,
        head_dim: pd,
        n: nd,
        ..
    } = host.dims;
    let mut out = vec![0.0; host.tokens() * heads * pd];
    let mut finals = Vec::with_capacity(host.sequences() * heads * pd * nd);
    for s in 0..host.sequences() {
        for h in 0..heads {
            let mut state = host.initial(s, h);
            for t in host.cu_seqlens[s]..host.cu_seqlens[s + 1] {
                let dt = host.dt_at(t, h);
                let decay = (dt * host.a[h] as f64).exp();
                for p in 0..pd {
                    let dx = dt * host.x_at(t, h, p);
                    let mut y = 0.0;
                    for n in 0..nd {
                        let st = &mut state[p * nd + n];
                        *st = decay * *st + dx * host.bc_at(host.b, t, h, n);
                        y += host.bc_at(host.c, t, h, n) * *st;
                    }
                    out[(t * heads + h) * pd + p] = host.finish(y, t, h, p);
                }
            }
            finals.extend_from_slice(&state);
        }
    }
    Ok(SsdOutput {
        out,
        final_states: finals,
    })
}

/// The chunked dual form with chunks of `chunk` tokens that never cross a sequence boundary,
/// in the GPU's order: per chunk dt and cum, each chunk's own state, the state scan across
/// chunks, then Y_diag + Y_off per chunk.
pub fn ssd_quadratic(host: &SsdHost, chunk: usize) -> Result<SsdOutput> {
    host.check()?;
    if chunk == 0 {
        return Err(Error::invalid("chunk size 0"));
    }
    let SsdDims {
        heads,
        head_dim: pd,
        n: nd,
        ..
    } = host.dims;
    let mut out = vec![0.0; host.tokens() * heads * pd];
    let mut finals = Vec::with_capacity(host.sequences() * heads * pd * nd);
    for s in 0..host.sequences() {
        let (first, end) = (host.cu_seqlens[s], host.cu_seqlens[s + 1]);
        let starts: Vec<usize> = (first..end).step_by(chunk).collect();
        for h in 0..heads {
            let a = host.a[h] as f64;
            // Per chunk: dt and the inclusive cumsum of dt·A.
            let spans: Vec<(usize, usize)> =
                starts.iter().map(|&t0| (t0, chunk.min(end - t0))).collect();
            let dts: Vec<Vec<f64>> = spans
                .iter()
                .map(|&(t0, q)| (0..q).map(|i| host.dt_at(t0 + i, h)).collect())
                .collect();
            let cums: Vec<Vec<f64>> = dts
                .iter()
                .map(|dt| {
                    dt.iter()
                        .scan(0.0, |acc, &d| {
                            *acc += d * a;
                            Some(*acc)
                        })
                        .collect()
                })
                .collect();
            // Each chunk's own state S_c[p,n] = Σ_s exp(cum_last − cum_s)·dt_s·x_s[p]·B_s[n].
            let own: Vec<Vec<f64>> = spans
                .iter()
                .enumerate()
                .map(|(k, &(t0, q))| {
                    let last = cums[k][q - 1];
                    let mut st = vec![0.0; pd * nd];
                    for i in 0..q {
                        let w = (last - cums[k][i]).exp() * dts[k][i];
                        for p in 0..pd {
                            let wx = w * host.x_at(t0 + i, h, p);
                            for n in 0..nd {
                                st[p * nd + n] += wx * host.bc_at(host.b, t0 + i, h, n);
                            }
                        }
                    }
                    st
                })
                .collect();
            // The scan across chunks: entering[k] is the state before chunk k.
            let mut running = host.initial(s, h);
            let mut entering = Vec::with_capacity(spans.len());
            for (k, &(_, q)) in spans.iter().enumerate() {
                entering.push(running.clone());
                let decay = cums[k][q - 1].exp();
                for (r, o) in running.iter_mut().zip(&own[k]) {
                    *r = decay * *r + o;
                }
            }
            finals.extend_from_slice(&running);
            // Outputs: Y_off + Y_diag, then D and the gate.
            for (k, &(t0, q)) in spans.iter().enumerate() {
                for i in 0..q {
                    let t = t0 + i;
                    let cb: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..nd)
                                .map(|n| {
                                    host.bc_at(host.c, t, h, n) * host.bc_at(host.b, t0 + j, h, n)
                                })
                                .sum()
                        })
                        .collect();
                    let decay_in = cums[k][i].exp();
                    for p in 0..pd {
                        let off: f64 = (0..nd)
                            .map(|n| host.bc_at(host.c, t, h, n) * entering[k][p * nd + n])
                            .sum();
                        let diag: f64 = (0..=i)
                            .map(|j| {
                                cb[j]
                                    * (cums[k][i] - cums[k][j]).exp()
                                    * dts[k][j]
                                    * host.x_at(t0 + j, h, p)
                            })
                            .sum();
                        out[(t * heads + h) * pd + p] = host.finish(decay_in * off + diag, t, h, p);
                    }
                }
            }
        }
    }
    Ok(SsdOutput {
        out,
        final_states: finals,
    })
}
