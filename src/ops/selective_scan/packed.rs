//! The packed form of the scan: what a Mamba model's prefill runs. Sequences of a ragged batch
//! are concatenated along time (T tokens in all, sequence s is tokens `cu_seqlens[s] ..
//! cu_seqlens[s+1]`), every activation is a strided [`View`] (so u, delta, z, B and C are read
//! straight out of the projections that made them), and the state lives in a pool
//! (Pool, D, N): sequence s starts from row `slots[s]` and leaves its last state there, which is
//! where the decode step (`state_update` with the same slots) continues. A fresh sequence's
//! row must be zeroed by the caller. Only the row-sequential kernel takes this form (one
//! invocation per (sequence, channel), which a model's D ≥ 1536 channels fill).

use super::*;
use crate::runtime::View;

const PACKED: u32 = 512;

/// Inputs of [`SelectiveScan::record_packed`] (f32; shapes in token-major order).
#[derive(Clone, Copy, Debug)]
pub struct PackedScanInputs<'a> {
    /// u (T, D).
    pub u: &'a View,
    /// delta (T, D).
    pub delta: &'a View,
    /// A (D, N), contiguous.
    pub a: &'a Tensor,
    /// B (T, G, N): G groups, channel d uses group d / (D/G).
    pub b: &'a View,
    /// C (T, G, N).
    pub c: &'a View,
    /// Optional skip weight D (D).
    pub d: Option<&'a Tensor>,
    /// Optional gate z (T, D).
    pub z: Option<&'a View>,
    /// Optional delta_bias (D).
    pub delta_bias: Option<&'a Tensor>,
    /// Apply softplus to delta + delta_bias.
    pub delta_softplus: bool,
    /// Token offsets of the S sequences: S + 1 values from 0 up to T, non-decreasing.
    pub cu_seqlens: &'a [u32],
    /// Pool row of each sequence (S distinct values < Pool).
    pub slots: &'a [u32],
}

fn view_uniforms(v: &View, name: &str) -> Result<(u32, Vec<u32>)> {
    v.index_u32(name)
}

/// Error unless writing through `v` (T, D) touches each element once.
fn expect_disjoint(v: &View, name: &str) -> Result<()> {
    let (shape, st) = (v.shape(), v.strides());
    let ok = shape.iter().any(|&n| n <= 1)
        || (st[1] >= 1 && st[0] >= shape[1] * st[1])
        || (st[0] >= 1 && st[1] >= shape[0] * st[0]);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "view `{name}` of shape {shape:?} with strides {st:?} would write an element twice"
        )))
    }
}

impl SelectiveScan {
    /// Record the packed scan: `out` (T, D) is written and the pool rows of `slots` updated.
    /// Everything is validated first; on error nothing is recorded.
    pub fn record_packed(
        &self,
        batch: &mut Batch,
        inputs: &PackedScanInputs,
        out: &View,
        state_pool: &Tensor,
    ) -> Result<()> {
        let [t, dim] = inputs.u.shape()[..] else {
            return Err(Error::shape("u", "(T, D)", inputs.u.shape()));
        };
        let [d_a, n] = inputs.a.shape()[..] else {
            return Err(Error::shape("A", "(D, N)", inputs.a.shape()));
        };
        inputs.a.expect("A", "(D, N)", &[dim, n], DType::F32)?;
        if n == 0 || n > MAX_N || d_a != dim || dim == 0 {
            return Err(Error::shape(
                "A",
                format!("(D, N) = ({dim}, N) with 1 ≤ N ≤ {MAX_N}"),
                inputs.a.shape(),
            ));
        }
        inputs
            .delta
            .expect("delta", "(T, D)", &[t, dim], DType::F32)?;
        inputs.u.expect("u", "(T, D)", &[t, dim], DType::F32)?;
        out.expect("out", "(T, D)", &[t, dim], DType::F32)?;
        if let Some(z) = inputs.z {
            z.expect("z", "(T, D)", &[t, dim], DType::F32)?;
        }
        let mut groups = [0usize; 2];
        for (k, (name, v)) in [("B", inputs.b), ("C", inputs.c)].into_iter().enumerate() {
            let g = match v.shape()[..] {
                [tt, g, nn] if tt == t && nn == n && g > 0 && dim % g == 0 => g,
                _ => {
                    return Err(Error::shape(
                        name,
                        format!("(T, G, N) = ({t}, G, {n}) with G dividing D = {dim}"),
                        v.shape(),
                    ))
                }
            };
            v.expect(name, "(T, G, N)", &[t, g, n], DType::F32)?;
            groups[k] = g;
        }
        for (name, p) in [("D", inputs.d), ("delta_bias", inputs.delta_bias)] {
            if let Some(p) = p {
                p.expect(name, "(D)", &[dim], DType::F32)?;
            }
        }
        let [pool, pd, pn] = state_pool.shape()[..] else {
            return Err(Error::shape(
                "state_pool",
                "(Pool, D, N)",
                state_pool.shape(),
            ));
        };
        state_pool.expect("state_pool", "(Pool, D, N)", &[pool, dim, n], DType::F32)?;
        let _ = (pd, pn);
        let s = inputs.slots.len();
        let cu = inputs.cu_seqlens;
        if cu.len() != s + 1
            || cu[0] != 0
            || cu[s] as usize != t
            || cu.windows(2).any(|w| w[1] < w[0])
        {
            return Err(Error::invalid(format!(
                "cu_seqlens must be {} non-decreasing token offsets from 0 to T = {t}, got {cu:?}",
                s + 1
            )));
        }
        let mut seen = vec![false; pool];
        for &slot in inputs.slots {
            let slot = slot as usize;
            if slot >= pool || std::mem::replace(&mut seen[slot], true) {
                return Err(Error::invalid(format!(
                    "slots {:?} must be distinct rows of the state pool (Pool = {pool})",
                    inputs.slots
                )));
            }
        }
        expect_disjoint(out, "out")?;
        let out_buf = out.tensor().buffer();
        for (name, v) in [
            ("u", Some(inputs.u)),
            ("delta", Some(inputs.delta)),
            ("z", inputs.z),
        ]
        .into_iter()
        .chain([("B", Some(inputs.b)), ("C", Some(inputs.c))])
        {
            if v.is_some_and(|v| v.tensor().buffer() == out_buf) {
                return Err(Error::invalid(format!(
                    "`out` shares its buffer with `{name}`: the scan cannot write where it reads"
                )));
            }
        }
        let gpu = batch.gpu();
        let max_bind = gpu.max_binding_bytes();
        for (name, tensor) in [
            ("u", inputs.u.tensor()),
            ("delta", inputs.delta.tensor()),
            ("B", inputs.b.tensor()),
            ("C", inputs.c.tensor()),
            ("out", out.tensor()),
            ("state_pool", state_pool),
        ] {
            if tensor.size_bytes() > max_bind {
                return Err(Error::Limit {
                    what: format!("`{name}` of shape {:?} in the packed scan", tensor.shape()),
                    detail: format!("max_storage_buffer_binding_size = {max_bind}"),
                });
            }
        }
        if pool * dim * n >= u32::MAX as usize {
            return Err(Error::Limit {
                what: format!("state pool of {} elements", pool * dim * n),
                detail: "the kernel indexes with 32-bit integers".into(),
            });
        }
        let (u_off, u_st) = view_uniforms(inputs.u, "u")?;
        let (dl_off, dl_st) = view_uniforms(inputs.delta, "delta")?;
        let (o_off, o_st) = view_uniforms(out, "out")?;
        let (z_off, z_st) = match inputs.z {
            Some(z) => view_uniforms(z, "z")?,
            None => (u_off, u_st.clone()),
        };
        let (b_off, b_st) = view_uniforms(inputs.b, "B")?;
        let (c_off, c_st) = view_uniforms(inputs.c, "C")?;
        let rows = s * dim;
        if rows == 0 || t == 0 {
            return Ok(());
        }

        // The scratch: A (D·N), D, delta_bias, then cu_seqlens and slots as u32 bits.
        let p_d = dim * n;
        let p_bias = p_d + dim;
        let p_cu = p_bias + dim;
        let p_slot = p_cu + s + 1;
        let chan_len = p_slot + s;
        let scratch = self.scratch_of(gpu, chan_len)?;
        batch.copy(inputs.a, 0, &scratch, 0, (dim * n * 4) as u64)?;
        if let Some(d) = inputs.d {
            batch.copy(d, 0, &scratch, (p_d * 4) as u64, (dim * 4) as u64)?;
        }
        if let Some(bias) = inputs.delta_bias {
            batch.copy(bias, 0, &scratch, (p_bias * 4) as u64, (dim * 4) as u64)?;
        }
        let table: Vec<f32> = cu
            .iter()
            .chain(inputs.slots)
            .map(|&x| f32::from_bits(x))
            .collect();
        batch.write(&scratch, p_cu, &table)?;

        let mut flags = B_VARIABLE | C_VARIABLE | HAS_INIT | PACKED;
        for (on, bit) in [
            (inputs.d.is_some(), HAS_D),
            (inputs.z.is_some(), HAS_Z),
            (inputs.delta_bias.is_some(), HAS_BIAS),
            (inputs.delta_softplus, SOFTPLUS),
        ] {
            if on {
                flags |= bit;
            }
        }
        let (kernel, wg) = match rows_per_workgroup(rows) {
            64 => (&self.kernel, 64),
            w => (&self.kernel_small, w),
        };
        let uniforms = Uniforms {
            rows: rows as u32,
            dim: dim as u32,
            n: n as u32,
            b_groups: groups[0] as u32,
            c_groups: groups[1] as u32,
            flags,
            p_d: p_d as u32,
            p_bias: p_bias as u32,
            u_view: [u_off, u_st[0], u_st[1]],
            delta_view: [dl_off, dl_st[0], dl_st[1]],
            z_view: [z_off, z_st[0], z_st[1]],
            out_view: [o_off, o_st[0], o_st[1]],
            b_view: [b_off, b_st[0], b_st[1], b_st[2]],
            c_view: [c_off, c_st[0], c_st[1], c_st[2]],
            p_cu: p_cu as u32,
            p_slot: p_slot as u32,
            pool: pool as u32,
            ..Default::default()
        };
        let z_bind = inputs.z.map_or(inputs.u.tensor(), |z| z.tensor());
        batch.dispatch(
            kernel,
            &uniforms,
            &[
                inputs.u.tensor().into(),
                inputs.delta.tensor().into(),
                (&scratch).into(),
                inputs.b.tensor().into(),
                inputs.c.tensor().into(),
                z_bind.into(),
                out.tensor().into(),
                state_pool.into(),
            ],
            rows.div_ceil(wg) as u32,
        )
    }
}
