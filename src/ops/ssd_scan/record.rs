//! Recording one SSD scan: validate everything ([`super::validate`]), then copy the small
//! parameters and tables into the op's scratch and record five dispatches per window of
//! [`super::plan`], in the form the device and the layout allow.

use super::validate::{shapes_of, Prepared};
use super::*;
use crate::ops::selective_scan::window;
use crate::runtime::view::contiguous_strides;
use crate::runtime::Binding;
use crate::spec::ssd_scan::clamps;

impl SsdScan {
    /// Record the packed scan: `out` (T, H, P) is written and the pool rows of `slots` updated
    /// (sequence s starts from row `slots[s]` of `state_pool` (Pool, H, P, N) f32 and leaves its
    /// final state there; callers zero a fresh row). Everything is validated first (shapes,
    /// dtypes, strides, slots, cu_seqlens, chunk size, N and P limits; not NaN); on error
    /// nothing is recorded.
    pub fn record_packed(
        &self,
        batch: &mut Batch,
        inputs: &SsdPackedInputs,
        out: &View,
        state_pool: &Tensor,
    ) -> Result<()> {
        let prepared = self.prepare(batch.gpu(), inputs, out, state_pool, false)?;
        self.emit(batch, &prepared)
    }

    /// Record the batched scan: `out` (Bt, L, H, P) and `final_states` (Bt, H, P, N), both f32,
    /// are written; sequence b starts from `initial_states[b]` (zero when absent; passing
    /// `final_states` itself is allowed). Validated first; on error nothing is recorded.
    pub fn record(
        &self,
        batch: &mut Batch,
        inputs: &SsdInputs,
        out: &Tensor,
        final_states: &Tensor,
    ) -> Result<()> {
        let (dims, _) = SsdDims::from_shapes(&shapes_of(inputs))?;
        let SsdDims {
            batch: bt,
            len: l,
            heads: h,
            head_dim: p,
            groups: g,
            n,
        } = dims;
        let t = bt * l;
        out.expect("out", "(Bt, L, H, P)", &[bt, l, h, p], DType::F32)?;
        final_states.expect("final_states", "(Bt, H, P, N)", &[bt, h, p, n], DType::F32)?;
        if let Some(init) = inputs.initial_states {
            init.expect_dtype("initial_states", DType::F32)?;
        }
        let flat = |tensor: &Tensor, shape: &[usize]| {
            View::as_strided(tensor, 0, shape, &contiguous_strides(shape))
        };
        let x = flat(inputs.x, &[t, h, p])?;
        let dt = flat(inputs.dt, &[t, h])?;
        let b = flat(inputs.b, &[t, g, n])?;
        let c = flat(inputs.c, &[t, g, n])?;
        let z = inputs.z.map(|z| flat(z, &[t, h, p])).transpose()?;
        let out_v = flat(out, &[t, h, p])?;
        let cu: Vec<u32> = (0..=bt).map(|i| (i * l) as u32).collect();
        let slots: Vec<u32> = (0..bt as u32).collect();
        let packed = SsdPackedInputs {
            x: &x,
            dt: &dt,
            a: inputs.a,
            b: &b,
            c: &c,
            d: inputs.d,
            z: z.as_ref(),
            dt_bias: inputs.dt_bias,
            dt_softplus: inputs.dt_softplus,
            dt_limit: inputs.dt_limit,
            chunk_size: inputs.chunk_size,
            cu_seqlens: &cu,
            slots: &slots,
        };
        let fresh = inputs.initial_states.is_none();
        let prepared = self.prepare(batch.gpu(), &packed, &out_v, final_states, fresh)?;
        if let Some(init) = inputs.initial_states {
            if init.buffer() != final_states.buffer() {
                batch.copy(init, 0, final_states, 0, final_states.size_bytes())?;
            }
        }
        self.emit(batch, &prepared)
    }

    /// Copy the parameters and tables into the scratch and record the windows' dispatches.
    fn emit(&self, batch: &mut Batch, pr: &Prepared) -> Result<()> {
        let gpu = batch.gpu();
        let inputs = &pr.inputs;
        let plan = &pr.plan;
        if plan.windows.is_empty() {
            return Ok(()); // no tokens: every pool row keeps its state
        }
        let SsdDims {
            heads: h,
            head_dim: p,
            groups: g,
            n,
            ..
        } = pr.dims;
        let q = inputs.chunk_size;

        // The table: A, dt_bias, D, then the chunk and segment tables.
        let p_bias = h;
        let p_d = 2 * h;
        let p_chunks = p_d + h * p;
        let p_segs = p_chunks + plan.chunks.len();
        let table = self.scratch_of(gpu, 0, p_segs + plan.segs.len())?;
        batch.copy(inputs.a, 0, &table, 0, (h * 4) as u64)?;
        if let Some(bias) = inputs.dt_bias {
            batch.copy(bias, 0, &table, (p_bias * 4) as u64, (h * 4) as u64)?;
        }
        if let Some(d) = inputs.d {
            batch.copy(d, 0, &table, (p_d * 4) as u64, d.size_bytes())?;
        }
        batch.write(&table, p_chunks, &plan.chunks)?;
        batch.write(&table, p_segs, &plan.segs)?;

        let nk = plan.max_nk;
        let dtcum_len = nk * h * 2 * q;
        let cb_len = nk * g * q * q;
        let states_len = nk * h * p * n;
        let dtcum = self.scratch_of(gpu, 1, dtcum_len)?;
        let cb = self.scratch_of(gpu, 2, cb_len)?;
        let states = self.scratch_of(gpu, 3, states_len)?;
        let head = |t: &Tensor, len: usize| Binding::range(t, 0, (len * 4) as u64);
        let (dtcum_b, cb_b, states_b) = (
            head(&dtcum, dtcum_len),
            head(&cb, cb_len),
            head(&states, states_len),
        );
        let table_b: Binding = (&table).into();
        let pool_b: Binding = pr.pool.into();

        let mut flags = 0;
        for (on, bit) in [
            (inputs.d.is_some(), HAS_D),
            (pr.d_layout == Some(DLayout::PerChannel), D_PER_P),
            (inputs.z.is_some(), HAS_Z),
            (inputs.dt_bias.is_some(), HAS_BIAS),
            (inputs.dt_softplus, SOFTPLUS),
            (clamps(inputs.dt_limit), CLAMP),
        ] {
            if on {
                flags |= bit;
            }
        }
        // The form of stages 2–5 and their grids (in workgroups per window chunk, or per
        // window segment for stage 4).
        let aligned = p % 4 == 0
            && n % 4 == 0
            && gpu.limits().min_storage_buffer_offset_alignment % 16 == 0
            && [
                Some(inputs.x),
                Some(inputs.b),
                Some(inputs.c),
                inputs.z,
                Some(pr.out),
            ]
            .into_iter()
            .flatten()
            .all(vec4_view);
        // Stages 2, 3 and 5 with their grids (invocations and invocations per workgroup).
        let ((cb_kernel, cb_grid), (state_kernel, state_grid), (scan_kernel, scan_grid)) =
            match &self.register {
                Some(reg) if aligned => {
                    let shared = self.shared.as_ref();
                    let state_inv = |rows: usize| h * p.div_ceil(rows) * n.div_ceil(8);
                    let scan_inv = |rows: usize| h * (q / rows) * p.div_ceil(8);
                    (
                        (&reg.cb, (g * (q / 4) * (q / 8), REG_WG)),
                        match shared {
                            Some(sh) if n % 64 == 0 => {
                                (&sh.state, (state_inv(SHARED_ROWS), SHARED_WG))
                            }
                            _ => (&reg.state, (state_inv(8), REG_WG)),
                        },
                        match shared {
                            Some(sh) if p % 64 == 0 => {
                                (&sh.scan, (scan_inv(SHARED_ROWS), SHARED_WG))
                            }
                            _ => (&reg.scan, (scan_inv(8), REG_WG)),
                        },
                    )
                }
                _ => {
                    let st = &self.staged;
                    (
                        (&st.cb, (g * q.div_ceil(TILE).pow(2), 1)),
                        (&st.state, (h * p.div_ceil(TILE) * n.div_ceil(TILE), 1)),
                        (&st.scan, (h * q.div_ceil(TILE) * p.div_ceil(TILE), 1)),
                    )
                }
            };
        let (passing, per) = if n % 4 == 0 {
            (&self.passing_vec4, 4)
        } else {
            (&self.passing, 1)
        };
        for w in &plan.windows {
            // Each view bound over the window's tokens, its offset rebased to the binding and
            // to the window's first token.
            let bind = |v: &View| -> Result<(Binding, [u32; 4])> {
                let st = v.strides();
                let first = v.offset() + w.tok0 * st[0];
                let inner: usize = v.shape()[1..]
                    .iter()
                    .zip(&st[1..])
                    .map(|(s, t)| (s - 1) * t)
                    .sum();
                let end = v.offset() + (w.tok1 - 1) * st[0] + inner + 1;
                let (b, start) = window(gpu, v.tensor(), first, end)?;
                let mut view = [0u32; 4];
                view[0] = (first - start as usize) as u32;
                for (k, &s) in st.iter().enumerate() {
                    view[k + 1] = s as u32;
                }
                Ok((b, view))
            };
            let (x_b, x_view) = bind(inputs.x)?;
            let (dt_b, dt_view) = bind(inputs.dt)?;
            let (b_b, b_view) = bind(inputs.b)?;
            let (c_b, c_view) = bind(inputs.c)?;
            let (o_b, o_view) = bind(pr.out)?;
            let (z_b, z_view) = match inputs.z {
                Some(z) => bind(z)?,
                None => (x_b.clone(), x_view),
            };
            let u = Uniforms {
                heads: h as u32,
                head_dim: p as u32,
                n: n as u32,
                groups: g as u32,
                q: q as u32,
                nk: w.nk as u32,
                k0: w.k0 as u32,
                nseg: w.nseg as u32,
                seg0: w.seg0 as u32,
                flags,
                p_a: 0,
                p_bias: p_bias as u32,
                p_d: p_d as u32,
                p_chunks: p_chunks as u32,
                p_segs: p_segs as u32,
                tok0: w.tok0 as u32,
                lo: inputs.dt_limit.0,
                hi: inputs.dt_limit.1,
                pool: pr.pool.shape()[0] as u32,
                hpg: (h / g) as u32,
                x_view,
                dt_view,
                b_view,
                c_view,
                z_view,
                o_view,
            };
            let groups = |count: usize| -> Result<u32> {
                u32::try_from(count).map_err(|_| {
                    limit(
                        format!("{count} workgroups in the SSD scan"),
                        "more than 2^32".into(),
                    )
                })
            };
            batch.dispatch(
                &self.cumsum,
                &u,
                &[table_b.clone(), dt_b, dtcum_b.clone()],
                groups((w.nk * h).div_ceil(CUMSUM_WG))?,
            )?;
            batch.dispatch(
                cb_kernel,
                &u,
                &[table_b.clone(), b_b.clone(), c_b.clone(), cb_b.clone()],
                groups((w.nk * cb_grid.0).div_ceil(cb_grid.1))?,
            )?;
            batch.dispatch(
                state_kernel,
                &u,
                &[
                    table_b.clone(),
                    x_b.clone(),
                    b_b,
                    dtcum_b.clone(),
                    states_b.clone(),
                ],
                groups((w.nk * state_grid.0).div_ceil(state_grid.1))?,
            )?;
            batch.dispatch(
                passing,
                &u,
                &[
                    table_b.clone(),
                    dtcum_b.clone(),
                    states_b.clone(),
                    pool_b.clone(),
                ],
                groups((w.nseg * h * p * n / per).div_ceil(PASSING_WG))?,
            )?;
            batch.dispatch(
                scan_kernel,
                &u,
                &[
                    table_b.clone(),
                    x_b,
                    c_b,
                    z_b,
                    dtcum_b.clone(),
                    cb_b.clone(),
                    states_b.clone(),
                    o_b,
                ],
                groups((w.nk * scan_grid.0).div_ceil(scan_grid.1))?,
            )?;
        }
        Ok(())
    }
}

/// Whether `v` can be bound as vec4s: its offset and every stride but the last (which is 1) a
/// multiple of 4, and its last dimension too, so each row is whole vec4s.
fn vec4_view(v: &View) -> bool {
    let (shape, st) = (v.shape(), v.strides());
    let last = shape.len() - 1;
    v.offset() % 4 == 0
        && st[last] == 1
        && shape[last] % 4 == 0
        && st[..last].iter().all(|s| s % 4 == 0)
}
